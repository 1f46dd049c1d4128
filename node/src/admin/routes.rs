//! Admin API routes, one small handler per operation.

use actix_web::{web, HttpResponse};
use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use consensus::state::{DomainLimits, Settings, UserOverrides, SETTING_SPECS};
use consensus::{Command, ConfigDocument};
use serde::{Deserialize, Serialize};

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;
type State = web::Data<AdminState>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .route("/cluster/status", web::get().to(cluster_status))
            .route("/cluster/tokens", web::post().to(issue_join_token))
            .route("/cluster/nodes/{id}", web::delete().to(remove_node))
            .route("/domains", web::get().to(list_domains))
            .route("/domains", web::post().to(add_domain))
            .route("/domains/{name}", web::delete().to(remove_domain))
            .route("/domains/{name}/limits", web::put().to(set_domain_limits))
            .route("/quota/usage", web::get().to(super::quota::list))
            .route("/attachment-links", web::get().to(super::attachment_links::list))
            .route("/attachment-links/{id}", web::delete().to(super::attachment_links::revoke))
            .route("/auth/check", web::post().to(super::login_check::check))
            .route("/quota/usage/{user}", web::get().to(super::quota::show))
            .route("/relay-domains", web::get().to(list_relay_domains))
            .route("/relay-domains/{domain}", web::put().to(set_relay_domain))
            .route("/relay-domains/{domain}", web::delete().to(remove_relay_domain))
            .route("/domain-aliases", web::post().to(add_domain_alias))
            .route("/domain-aliases/{alias}", web::delete().to(remove_domain_alias))
            .route("/users", web::get().to(list_users))
            .route("/users", web::post().to(add_user))
            .route("/users/{address}", web::delete().to(remove_user))
            .route("/users/{address}/password", web::put().to(set_password))
            .route("/users/{address}/enabled", web::put().to(set_enabled))
            .route("/users/{address}/frozen", web::put().to(set_frozen))
            .route("/users/{address}/overrides", web::put().to(set_overrides))
            .route("/groups", web::get().to(list_groups))
            .route("/groups", web::post().to(add_group))
            .route("/groups/{address}", web::delete().to(remove_group))
            .route("/groups/{address}/members", web::post().to(add_member))
            .route("/groups/{address}/members/{member}", web::delete().to(remove_member))
            .route("/aliases", web::get().to(list_aliases))
            .route("/aliases", web::post().to(add_alias))
            .route("/aliases/{address}", web::delete().to(remove_alias))
            .route("/config", web::get().to(list_config))
            .route("/config/{key}", web::get().to(get_config))
            .route("/config/{key}", web::put().to(set_config))
            .route("/config/{key}", web::delete().to(reset_config))
            .route("/export", web::get().to(export))
            .route("/import", web::post().to(import))
            .route("/rules", web::get().to(super::rules::list))
            .route("/rules", web::post().to(super::rules::add))
            .route("/rules/import", web::post().to(super::rules::import))
            .route("/rules/{id}", web::delete().to(super::rules::remove))
            .route("/greylist", web::get().to(super::rules::greylist))
            .route("/greylist/authorize", web::post().to(super::rules::authorize))
            .route("/dkim", web::get().to(super::dkim::list))
            .route("/dkim", web::post().to(super::dkim::generate))
            .route("/dkim/{domain}/{selector}/activate", web::post().to(super::dkim::activate))
            .route("/dkim/{domain}/{selector}", web::delete().to(super::dkim::remove))
            .route("/blocked", web::get().to(super::rules::blocked))
            .route("/blocked", web::post().to(super::rules::block))
            .route("/blocked/{ip}", web::delete().to(super::rules::unblock))
            .route("/content/filters", web::get().to(super::content::list))
            .route("/content/filters", web::post().to(super::content::add))
            .route("/content/filters/import", web::post().to(super::content::import))
            .route("/content/filters/{id}", web::delete().to(super::content::remove))
            .route("/antivirus/template", web::get().to(super::content::template))
            .route("/antivirus/template", web::put().to(super::content::set_template))
            .route("/antivirus/status", web::get().to(super::content::status))
            .route("/antivirus/update", web::post().to(super::content::update))
            .route("/spam/check", web::post().to(super::spam::check))
            .route("/spam/learn", web::post().to(super::spam::learn))
            .route("/spam/status", web::get().to(super::spam::status))
            .route("/spam/reports", web::get().to(super::spam::list_reports))
            .route("/spam/reports", web::post().to(super::spam::report))
            .route("/spam/reports/approve", web::post().to(super::spam::approve_reports))
            .route("/spam/reports/{id}", web::delete().to(super::spam::discard_report))
            .route("/spam/rules", web::get().to(super::spam_rules::list))
            .route("/spam/rules/import", web::post().to(super::spam_rules::import))
            .route("/spam/rules/export", web::get().to(super::spam_rules::export))
            .route("/spam/rules/files/{name}", web::delete().to(super::spam_rules::remove))
            .route("/spam/update", web::post().to(super::spam_rules::update))
            .route("/spam/filters", web::get().to(super::spam::export_filters))
            .route("/spam/filters/import", web::post().to(super::spam::import_filters))
            .route("/spam/addresses", web::get().to(super::spam::list_addresses))
            .route("/spam/addresses", web::post().to(super::spam::add_address))
            .route("/spam/addresses/{id}", web::delete().to(super::spam::remove_address))
            .route("/spam/keywords", web::get().to(super::spam::list_keywords))
            .route("/spam/keywords", web::post().to(super::spam::add_keyword))
            .route("/spam/keywords/{id}", web::delete().to(super::spam::remove_keyword))
            .route("/quarantine", web::get().to(super::quarantine::list))
            .route("/quarantine/{id}", web::get().to(super::quarantine::show))
            .route("/quarantine/{id}/{action}", web::post().to(super::quarantine::control))
            .route("/queue", web::get().to(super::queue::list))
            .route("/queue/replicas", web::get().to(super::queue::replicas))
            .route("/queue/{id}", web::get().to(super::queue::show))
            .route("/queue/{id}/{action}", web::post().to(super::queue::control)),
    );
}

/// Proposes one command; success is `{"ok": true}`.
async fn apply(state: &State, command: Command) -> Reply {
    state.node.proposer.propose(command).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

/// Passwords are hashed here, before proposing: `apply` must not draw a salt.
fn hash_password(password: &str) -> Result<String, ApiError> {
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err(ApiError::bad_request("password", "must be 8 to 1024 bytes long"));
    }
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("hashing password: {e}")))
}

async fn cluster_status(state: State) -> Reply {
    Ok(HttpResponse::Ok().json(state.node.status().await))
}

async fn issue_join_token(state: State) -> Reply {
    let token = state.node.issue_join_token().await.map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "token": token, "seed": state.node.config.raft_listen })))
}

async fn remove_node(state: State, path: web::Path<String>) -> Reply {
    let id: u64 = path.parse().map_err(|_| ApiError::bad_request("node_id", format!("{path:?} is not a node id")))?;
    state.node.remove_member(id).await.map_err(|e| ApiError::bad_request("node_id", e.to_string()))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

#[derive(Serialize)]
struct DomainView {
    name: String,
    aliases: Vec<String>,
    limits: DomainLimits,
}

async fn list_domains(state: State) -> Reply {
    let applied = state.node.read.load();
    let dir = &applied.state.directory;
    let views: Vec<DomainView> = dir
        .domains
        .iter()
        .map(|(name, d)| DomainView {
            name: name.clone(),
            aliases: dir.domain_aliases.iter().filter(|(_, t)| *t == name).map(|(a, _)| a.clone()).collect(),
            limits: d.limits.clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

#[derive(Deserialize)]
struct NameBody {
    name: String,
}

async fn add_domain(state: State, body: web::Json<NameBody>) -> Reply {
    apply(&state, Command::AddDomain { name: body.into_inner().name }).await
}

async fn remove_domain(state: State, path: web::Path<String>) -> Reply {
    apply(&state, Command::RemoveDomain { name: path.into_inner() }).await
}

async fn list_relay_domains(state: State) -> Reply {
    let applied = state.node.read.load();
    let views: Vec<serde_json::Value> = applied
        .state
        .directory
        .relay_domains
        .iter()
        .map(|(domain, r)| serde_json::json!({ "domain": domain, "recipients": r.recipients }))
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

#[derive(Deserialize)]
struct RelayDomainBody {
    #[serde(default)]
    recipients: Vec<String>,
}

async fn set_relay_domain(state: State, path: web::Path<String>, body: web::Json<RelayDomainBody>) -> Reply {
    let command = Command::SetRelayDomain { domain: path.into_inner(), recipients: body.into_inner().recipients };
    apply(&state, command).await
}

async fn remove_relay_domain(state: State, path: web::Path<String>) -> Reply {
    apply(&state, Command::RemoveRelayDomain { domain: path.into_inner() }).await
}

async fn set_domain_limits(state: State, path: web::Path<String>, body: web::Json<DomainLimits>) -> Reply {
    apply(&state, Command::SetDomainLimits { domain: path.into_inner(), limits: body.into_inner() }).await
}

#[derive(Deserialize)]
struct DomainAliasBody {
    alias: String,
    target: String,
}

async fn add_domain_alias(state: State, body: web::Json<DomainAliasBody>) -> Reply {
    let b = body.into_inner();
    apply(&state, Command::AddDomainAlias { alias: b.alias, target: b.target }).await
}

async fn remove_domain_alias(state: State, path: web::Path<String>) -> Reply {
    apply(&state, Command::RemoveDomainAlias { alias: path.into_inner() }).await
}

/// A user as the API shows it: never the password hash.
#[derive(Serialize)]
struct UserView {
    address: String,
    display_name: String,
    enabled: bool,
    frozen: bool,
    overrides: UserOverrides,
}

async fn list_users(state: State) -> Reply {
    let applied = state.node.read.load();
    let views: Vec<UserView> = applied
        .state
        .directory
        .users
        .values()
        .map(|u| UserView {
            address: u.address.clone(),
            display_name: u.display_name.clone(),
            enabled: u.enabled,
            frozen: u.frozen,
            overrides: u.overrides.clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

#[derive(Deserialize)]
struct AddUserBody {
    address: String,
    password: String,
    #[serde(default)]
    display_name: String,
}

async fn add_user(state: State, body: web::Json<AddUserBody>) -> Reply {
    let b = body.into_inner();
    let password_hash = hash_password(&b.password)?;
    apply(&state, Command::AddUser { address: b.address, display_name: b.display_name, password_hash }).await
}

async fn remove_user(state: State, path: web::Path<String>) -> Reply {
    apply(&state, Command::RemoveUser { address: path.into_inner() }).await
}

#[derive(Deserialize)]
struct PasswordBody {
    password: String,
}

async fn set_password(state: State, path: web::Path<String>, body: web::Json<PasswordBody>) -> Reply {
    let password_hash = hash_password(&body.password)?;
    apply(&state, Command::SetPassword { address: path.into_inner(), password_hash }).await
}

#[derive(Deserialize)]
struct EnabledBody {
    enabled: bool,
}

async fn set_enabled(state: State, path: web::Path<String>, body: web::Json<EnabledBody>) -> Reply {
    apply(&state, Command::SetUserEnabled { address: path.into_inner(), enabled: body.enabled }).await
}

#[derive(Deserialize)]
struct FrozenBody {
    frozen: bool,
}

async fn set_frozen(state: State, path: web::Path<String>, body: web::Json<FrozenBody>) -> Reply {
    apply(&state, Command::SetUserFrozen { address: path.into_inner(), frozen: body.frozen }).await
}

async fn set_overrides(state: State, path: web::Path<String>, body: web::Json<UserOverrides>) -> Reply {
    apply(&state, Command::SetUserOverrides { address: path.into_inner(), overrides: body.into_inner() }).await
}

async fn list_groups(state: State) -> Reply {
    let applied = state.node.read.load();
    let groups: Vec<_> = applied.state.directory.groups.values().cloned().collect();
    Ok(HttpResponse::Ok().json(groups))
}

#[derive(Deserialize)]
struct AddressBody {
    address: String,
}

async fn add_group(state: State, body: web::Json<AddressBody>) -> Reply {
    apply(&state, Command::AddGroup { address: body.into_inner().address }).await
}

async fn remove_group(state: State, path: web::Path<String>) -> Reply {
    apply(&state, Command::RemoveGroup { address: path.into_inner() }).await
}

#[derive(Deserialize)]
struct MemberBody {
    member: String,
}

async fn add_member(state: State, path: web::Path<String>, body: web::Json<MemberBody>) -> Reply {
    apply(&state, Command::AddGroupMember { group: path.into_inner(), member: body.into_inner().member }).await
}

async fn remove_member(state: State, path: web::Path<(String, String)>) -> Reply {
    let (group, member) = path.into_inner();
    apply(&state, Command::RemoveGroupMember { group, member }).await
}

async fn list_aliases(state: State) -> Reply {
    let applied = state.node.read.load();
    let aliases: Vec<_> = applied.state.directory.aliases.values().cloned().collect();
    Ok(HttpResponse::Ok().json(aliases))
}

#[derive(Deserialize)]
struct AliasBody {
    address: String,
    targets: Vec<String>,
}

async fn add_alias(state: State, body: web::Json<AliasBody>) -> Reply {
    let b = body.into_inner();
    apply(&state, Command::AddAlias { address: b.address, targets: b.targets }).await
}

async fn remove_alias(state: State, path: web::Path<String>) -> Reply {
    apply(&state, Command::RemoveAlias { address: path.into_inner() }).await
}

#[derive(Serialize)]
struct SettingView {
    key: &'static str,
    value: String,
    default: &'static str,
    doc: &'static str,
}

fn setting_view(settings: &Settings, spec: &consensus::state::SettingSpec) -> SettingView {
    let value = settings.values().get(spec.key).cloned().unwrap_or_else(|| spec.default.to_string());
    let value = if Settings::is_secret(spec.key) && !value.is_empty() { "(set)".to_string() } else { value };
    SettingView { key: spec.key, value, default: spec.default, doc: spec.doc }
}

async fn list_config(state: State) -> Reply {
    let applied = state.node.read.load();
    let views: Vec<_> = SETTING_SPECS.iter().map(|s| setting_view(&applied.state.settings, s)).collect();
    Ok(HttpResponse::Ok().json(views))
}

async fn get_config(state: State, path: web::Path<String>) -> Reply {
    let spec = Settings::spec(&path).map_err(|e| ApiError::bad_request("key", e.to_string()))?;
    let applied = state.node.read.load();
    Ok(HttpResponse::Ok().json(setting_view(&applied.state.settings, spec)))
}

#[derive(Deserialize)]
struct ValueBody {
    value: String,
}

async fn set_config(state: State, path: web::Path<String>, body: web::Json<ValueBody>) -> Reply {
    apply(&state, Command::SetSetting { key: path.into_inner(), value: body.into_inner().value }).await
}

async fn reset_config(state: State, path: web::Path<String>) -> Reply {
    apply(&state, Command::ResetSetting { key: path.into_inner() }).await
}

#[derive(Deserialize)]
struct ExportQuery {
    /// Include secret settings (the smarthost password).
    #[serde(default)]
    secrets: bool,
}

async fn export(state: State, query: web::Query<ExportQuery>) -> Reply {
    let mut document = state.node.read.load().state.export();
    if !query.secrets {
        document.settings = document.settings.without_secrets();
    }
    Ok(HttpResponse::Ok().json(document))
}

async fn import(state: State, body: web::Json<ConfigDocument>) -> Reply {
    apply(&state, Command::ImportConfig { document: Box::new(body.into_inner()) }).await
}
