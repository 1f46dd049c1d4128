//! Deterministic application of commands to the cluster state.
//!
//! No clock, no randomness, no IO: the only time is the request's `at_ms`.
//! Each command first checks everything it needs, then mutates, so a refused
//! command leaves the state exactly as it was.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::address::{DomainName, MailAddress};
use crate::command::{ApplyError, ClusterRequest, ClusterResponse, Command, GreylistVerdict, Outcome};
use crate::state::content::AddAttachmentRuleError;
use crate::state::counters::{DAY_MS, HIJACK_CLIENTS_MAX};
use crate::state::dkim::valid_selector;
use crate::state::rules::AddRuleError;
use crate::state::settings::key;
use crate::state::{
    Alias, ClusterState, ConfigDocument, DailyQuota, Domain, Group, HijackCounter, NodeRecord, PendingJoin,
    RelayDomain, UnfreezeToken, User, CONFIG_DOCUMENT_VERSION,
};
use crate::state::{
    AttachmentLink, AttachmentRule, BlockedIp, ContentFilters, DkimKey, GreylistClient, GreylistTriplet, ListRule,
    QuarantineState, RuleSets, UnknownRecipients,
};

type Applied = Result<Outcome, ApplyError>;

fn spam_rule_added(added: Result<u64, Result<u64, crate::state::spam::SpamRuleError>>) -> Applied {
    match added {
        Ok(id) => Ok(Outcome::RuleAdded { id }),
        Err(Ok(existing)) => Err(ApplyError::RuleExists(existing)),
        Err(Err(e)) => Err(ApplyError::BadRule { field: e.field.to_string(), reason: e.reason }),
    }
}

/// Distinct tokens one learned message may carry (the tokenizer keeps fewer).
pub const LEARN_TOKENS_MAX: usize = 10_000;

fn spam_rule_error(e: crate::state::spam::SpamRuleError) -> ApplyError {
    ApplyError::BadRule { field: e.field.to_string(), reason: e.reason }
}

fn bounded_tokens(tokens: &[u64]) -> Result<(), ApplyError> {
    if tokens.len() > LEARN_TOKENS_MAX {
        let reason = format!("at most {LEARN_TOKENS_MAX} tokens per message");
        return Err(ApplyError::BadRule { field: "tokens".into(), reason });
    }
    Ok(())
}

impl ClusterState {
    /// Learns these reports into the Bayes model and removes them; returns how many.
    fn learn_reports(&mut self, ids: &[u64]) -> u64 {
        let max = self.settings.uint(crate::state::settings::key::SPAM_BAYES_TOKENS_MAX) as usize;
        let mut learned = 0;
        for id in ids {
            if let Some(r) = self.spam.reports.remove(id) {
                self.spam.bayes.learn(r.digest, r.class, &r.tokens, max);
                learned += 1;
            }
        }
        learned
    }

    fn quarantine_request(&mut self, id: &str, state: QuarantineState) -> Applied {
        match self.quarantine.request(id, state) {
            true => Ok(Outcome::Done),
            false => Err(ApplyError::UnknownQuarantined(id.to_string())),
        }
    }

    /// Applies a whole log entry.
    pub fn apply_request(&mut self, request: &ClusterRequest) -> ClusterResponse {
        let results = request.commands.iter().map(|c| self.apply(c, request.at_ms)).collect();
        ClusterResponse { results }
    }

    /// Applies one command at time `at_ms`.
    pub fn apply(&mut self, command: &Command, at_ms: u64) -> Applied {
        self.commands_applied += 1;
        use Command::*;
        match command {
            SetSetting { key, value } => {
                self.settings.set(key, value)?;
                Ok(Outcome::Done)
            }
            ResetSetting { key } => {
                self.settings.reset(key)?;
                Ok(Outcome::Done)
            }
            AddListRule { rule } => match self.rules.add(rule.clone()) {
                Ok(id) => Ok(Outcome::RuleAdded { id }),
                Err(AddRuleError::Bad(e)) => Err(ApplyError::BadRule { field: e.field.to_string(), reason: e.reason }),
                Err(AddRuleError::Exists(id)) => Err(ApplyError::RuleExists(id)),
            },
            RemoveListRule { id } => self.rules.remove(*id).map(|_| Outcome::Done).ok_or(ApplyError::UnknownRule(*id)),
            ImportRules { rules, replace } => self.import_rules(rules, *replace),
            AddAttachmentRule { rule } => match self.content.add(rule.clone()) {
                Ok(id) => Ok(Outcome::RuleAdded { id }),
                Err(AddAttachmentRuleError::Exists(id)) => Err(ApplyError::RuleExists(id)),
                Err(AddAttachmentRuleError::Bad(e)) => {
                    Err(ApplyError::BadRule { field: e.field.into(), reason: e.reason })
                }
            },
            RemoveAttachmentRule { id } => {
                self.content.attachments.remove(id).map(|_| Outcome::Done).ok_or(ApplyError::UnknownRule(*id))
            }
            ImportAttachmentRules { rules, replace } => self.import_attachment_rules(rules, *replace),
            QuarantineAdd { id, entry } => {
                self.quarantine.add(id, entry.clone());
                Ok(Outcome::Done)
            }
            QuarantineRelease { id } => self.quarantine_request(id, QuarantineState::Releasing),
            QuarantineDelete { id } => self.quarantine_request(id, QuarantineState::Deleting),
            RequestAntivirusUpdate => Ok(Outcome::AntivirusUpdate { generation: Some(self.antivirus.request(at_ms)) }),
            ScheduleAntivirusUpdate { day } => {
                Ok(Outcome::AntivirusUpdate { generation: self.antivirus.request_scheduled(*day, at_ms) })
            }
            ReportAntivirusStatus { node_id, status } => {
                let mut status = status.clone();
                for text in [&mut status.version, &mut status.error, &mut status.update_result] {
                    text.truncate(text.floor_char_boundary(1000));
                }
                self.antivirus.nodes.insert(*node_id, status);
                Ok(Outcome::Done)
            }
            LearnSpam { digest, class, tokens } => {
                bounded_tokens(tokens)?;
                let max = self.settings.uint(crate::state::settings::key::SPAM_BAYES_TOKENS_MAX) as usize;
                let effect = self.spam.bayes.learn(*digest, *class, tokens, max);
                Ok(Outcome::Learned { effect })
            }
            AddSpamAddress { rule } => spam_rule_added(self.spam.add_address(rule.clone())),
            RemoveSpamAddress { id } => {
                self.spam.addresses.remove(id).map(|_| Outcome::Done).ok_or(ApplyError::UnknownRule(*id))
            }
            AddSpamKeyword { rule } => spam_rule_added(self.spam.add_keyword(rule.clone())),
            RemoveSpamKeyword { id } => {
                self.spam.keywords.remove(id).map(|_| Outcome::Done).ok_or(ApplyError::UnknownRule(*id))
            }
            RecordCorrespondents { pairs, expires_ms } => {
                if pairs.len() > crate::state::spam::CORRESPONDENTS_PER_COMMAND_MAX {
                    return Err(ApplyError::BadRule {
                        field: "pairs".into(),
                        reason: "too many in one command".into(),
                    });
                }
                self.spam.record_correspondents(pairs, *expires_ms);
                Ok(Outcome::Done)
            }
            ReportSpam { report } => {
                bounded_tokens(&report.tokens)?;
                let max = self.settings.uint(crate::state::settings::key::SPAM_REPORTS_PER_USER_MAX) as usize;
                match self.spam.add_report(report.clone(), max) {
                    Ok(id) => Ok(Outcome::RuleAdded { id }),
                    Err(e) => Err(ApplyError::BadRule { field: e.field.to_string(), reason: e.reason }),
                }
            }
            ApproveSpamReports { ids } => {
                if let Some(missing) = ids.iter().find(|id| !self.spam.reports.contains_key(id)) {
                    return Err(ApplyError::UnknownRule(*missing));
                }
                Ok(Outcome::ReportsLearned { learned: self.learn_reports(ids) })
            }
            LearnPendingReports { day } => {
                if !crate::state::counters::first_of_day(&mut self.spam.reports_learned_day, *day) {
                    return Ok(Outcome::ReportsLearned { learned: 0 });
                }
                let ids: Vec<u64> = self.spam.reports.keys().copied().collect();
                Ok(Outcome::ReportsLearned { learned: self.learn_reports(&ids) })
            }
            DiscardSpamReport { id } => {
                self.spam.reports.remove(id).map(|_| Outcome::Done).ok_or(ApplyError::UnknownRule(*id))
            }
            ImportSpamRules { files, replace } => {
                self.spam.import_rule_files(files, *replace, at_ms).map_err(spam_rule_error)?;
                Ok(Outcome::RulesImported { added: files.len() as u64, skipped: 0 })
            }
            RemoveSpamRules { name } => {
                if self.spam.rule_files.remove(name).is_none() {
                    return Err(ApplyError::BadRule {
                        field: "name".into(),
                        reason: format!("no imported rule file {name:?}"),
                    });
                }
                self.spam.rules_version += 1;
                Ok(Outcome::Done)
            }
            InstallSpamRulePack { pack } => {
                self.spam.install_rule_pack(pack, at_ms).map_err(spam_rule_error)?;
                Ok(Outcome::Done)
            }
            ClaimSpamRuleUpdate { day } => Ok(Outcome::Claimed {
                claimed: crate::state::counters::first_of_day(&mut self.spam.rules_update_day, *day),
            }),
            ImportSpamFilters { addresses, keywords, replace } => {
                match self.spam.import_filters(addresses, keywords, *replace) {
                    Ok((added, skipped)) => Ok(Outcome::RulesImported { added, skipped }),
                    Err(e) => Err(ApplyError::BadRule { field: e.field.to_string(), reason: e.reason }),
                }
            }
            QuarantineForget { id } => {
                self.quarantine.forget(id);
                Ok(Outcome::Done)
            }
            AddDomain { name } => self.add_domain(name, at_ms),
            RemoveDomain { name } => self.remove_domain(name),
            AddDomainAlias { alias, target } => self.add_domain_alias(alias, target),
            SetRelayDomain { domain: name, recipients } => self.set_relay_domain(name, recipients),
            RemoveRelayDomain { domain: name } => {
                let name = domain("domain", name)?;
                match self.directory.relay_domains.remove(&name) {
                    Some(_) => Ok(Outcome::Done),
                    None => Err(ApplyError::UnknownDomain(name)),
                }
            }
            RemoveDomainAlias { alias } => {
                let alias = domain("alias", alias)?;
                self.directory
                    .domain_aliases
                    .remove(&alias)
                    .map(|_| Outcome::Done)
                    .ok_or(ApplyError::UnknownDomain(alias))
            }
            AddUser { address, display_name, password_hash } => {
                self.add_user(address, display_name, password_hash, at_ms)
            }
            SetPassword { address, password_hash } => {
                check_hash(password_hash)?;
                self.user_mut(address)?.password_hash = password_hash.clone();
                Ok(Outcome::Done)
            }
            SetUserEnabled { address, enabled } => {
                self.user_mut(address)?.enabled = *enabled;
                Ok(Outcome::Done)
            }
            SetUserFrozen { address, frozen } => {
                self.user_mut(address)?.frozen = *frozen;
                Ok(Outcome::Done)
            }
            SetDomainLimits { domain: name, limits } => {
                let name = domain("domain", name)?;
                let d = self.directory.domains.get_mut(&name).ok_or(ApplyError::UnknownDomain(name))?;
                d.limits = limits.clone();
                Ok(Outcome::Done)
            }
            SetUserOverrides { address, overrides } => {
                self.user_mut(address)?.overrides = overrides.clone();
                Ok(Outcome::Done)
            }
            RemoveUser { address } => self.remove_user(address),
            AddGroup { address } => self.add_group(address),
            RemoveGroup { address } => {
                let key = mail("address", address)?;
                self.directory.groups.remove(&key).map(|_| Outcome::Done).ok_or(ApplyError::UnknownGroup(key))
            }
            AddGroupMember { group, member } => self.change_group(group, member, true),
            RemoveGroupMember { group, member } => self.change_group(group, member, false),
            AddAlias { address, targets } => self.add_alias(address, targets),
            RemoveAlias { address } => {
                let key = mail("address", address)?;
                self.directory.aliases.remove(&key).map(|_| Outcome::Done).ok_or(ApplyError::UnknownAlias(key))
            }
            ImportConfig { document } => self.import(document),
            AddDkimKey { domain, selector, key } => self.add_dkim_key(domain, selector, key),
            ActivateDkimKey { domain, selector } => {
                let domain = self::domain("domain", domain)?;
                let keys = self.dkim.domains.get_mut(&domain);
                let Some(keys) = keys.filter(|k| k.contains_key(selector)) else {
                    return Err(ApplyError::UnknownSelector { domain, selector: selector.clone() });
                };
                for (s, k) in keys.iter_mut() {
                    k.active = s == selector;
                }
                Ok(Outcome::Done)
            }
            RemoveDkimKey { domain, selector } => {
                let domain = self::domain("domain", domain)?;
                let removed = self.dkim.domains.get_mut(&domain).and_then(|k| k.remove(selector));
                if removed.is_none() {
                    return Err(ApplyError::UnknownSelector { domain, selector: selector.clone() });
                }
                if self.dkim.domains.get(&domain).is_some_and(|k| k.is_empty()) {
                    self.dkim.domains.remove(&domain);
                }
                Ok(Outcome::Done)
            }
            RecordGreylistAttempt { triplet, delay_ms, retry_window_ms, pass_ttl_ms } => {
                self.greylist_attempt(triplet, *delay_ms, *retry_window_ms, *pass_ttl_ms, at_ms)
            }
            AuthorizeGreylist { triplet, pass_ttl_ms } => {
                let pending = self.counters.greylist.get_mut(triplet).filter(|t| t.expires_ms > at_ms);
                let Some(t) = pending else { return Err(ApplyError::UnknownTriplet(triplet.clone())) };
                let first_pass = t.passed_ms.is_none();
                t.passed_ms = Some(at_ms);
                t.expires_ms = at_ms.saturating_add(*pass_ttl_ms);
                if first_pass {
                    self.count_greylist_pass(triplet, *pass_ttl_ms, at_ms);
                }
                Ok(Outcome::Done)
            }
            RecordUnknownRecipient { ip, threshold, window_ms, block_ms } => {
                let (count, blocked) =
                    self.count_ip(IpAbuse::UnknownRecipients, ip, *threshold, *window_ms, *block_ms, at_ms)?;
                Ok(Outcome::UnknownRecipientCounted { count, blocked })
            }
            RecordFailedLogin { ip, threshold, window_ms, block_ms } => {
                let (count, blocked) =
                    self.count_ip(IpAbuse::FailedLogins, ip, *threshold, *window_ms, *block_ms, at_ms)?;
                Ok(Outcome::FailedLoginCounted { count, blocked })
            }
            ChargeDailyQuota { user, messages, bytes } => self.charge_quota(user, *messages, *bytes, at_ms),
            IncrementHijack { user, client } => self.increment_hijack(user, client, at_ms),
            IssueUnfreezeToken { user, token_sha256, expires_ms } => {
                let user = mail("user", user)?;
                let token = UnfreezeToken { user, expires_ms: *expires_ms };
                self.counters.unfreeze_tokens.insert(token_sha256.clone(), token);
                Ok(Outcome::Done)
            }
            RedeemUnfreezeToken { token_sha256 } => match self.counters.unfreeze_tokens.remove(token_sha256) {
                Some(t) if t.expires_ms > at_ms => {
                    if let Some(u) = self.directory.users.get_mut(&t.user) {
                        u.frozen = false;
                    }
                    // A fresh window: the burst that froze it is not held against it again.
                    self.counters.hijack.remove(&t.user);
                    Ok(Outcome::Unfrozen { user: t.user })
                }
                _ => Err(ApplyError::BadUnfreezeToken),
            },
            AddAttachmentLink { token_sha256, link } => self.add_attachment_link(token_sha256, link, at_ms),
            RemoveAttachmentLink { token_sha256 } => match self.attachment_links.links.remove(token_sha256) {
                Some(_) => Ok(Outcome::Done),
                None => Err(ApplyError::UnknownAttachmentLink(token_sha256.clone())),
            },
            RecordAttachmentDownload { token_sha256 } => match self.attachment_links.links.get_mut(token_sha256) {
                Some(link) => {
                    link.downloads += 1;
                    link.last_download_ms = Some(at_ms);
                    Ok(Outcome::Done)
                }
                None => Err(ApplyError::UnknownAttachmentLink(token_sha256.clone())),
            },
            BlockIp { ip, until_ms, reason } => {
                let ip: IpAddr = ip.parse().map_err(|_| ApplyError::BadIp(ip.clone()))?;
                let record = BlockedIp { until_ms: *until_ms, reason: reason.clone() };
                self.counters.blocked_ips.insert(ip.to_string(), record);
                Ok(Outcome::Done)
            }
            UnblockIp { ip } => {
                let ip: IpAddr = ip.parse().map_err(|_| ApplyError::BadIp(ip.clone()))?;
                self.counters.blocked_ips.remove(&ip.to_string());
                Ok(Outcome::Done)
            }
            ExpireCounters => {
                let removed = (self.counters.expire(at_ms)
                    + self.spam.expire_correspondents(at_ms)
                    + self.attachment_links.expire(at_ms)
                    + self
                        .spool_owners
                        .expire_claims(at_ms, self.settings.uint(key::QUEUE_LIFETIME_S).saturating_mul(1000)))
                    as u64;
                self.cluster.join_tokens.retain(|_, t| t.expires_ms > at_ms);
                Ok(Outcome::Expired { removed })
            }
            IssueJoinToken { token_sha256, expires_ms } => {
                self.cluster.join_tokens.insert(token_sha256.clone(), PendingJoin { expires_ms: *expires_ms });
                Ok(Outcome::Done)
            }
            RedeemJoinToken { token_sha256, raft_addr, admin_addr } => {
                self.redeem_join_token(token_sha256, raft_addr, admin_addr, at_ms)
            }
            ForgetNode { node_id } => {
                self.cluster.nodes.remove(node_id).map(|_| Outcome::Done).ok_or(ApplyError::UnknownNode(*node_id))
            }
            SpoolOwnerRemoved { node_id } => {
                self.spool_owners.owners.entry(*node_id).or_default().removed = true;
                // A removed holder delivers nothing more: the owners keep (and deliver)
                // their copies of what it had taken over.
                self.spool_owners.forget_holder(*node_id);
                Ok(Outcome::Done)
            }
            RenewSpoolLease { node_id } => {
                let owner = self.spool_owners.owners.entry(*node_id).or_default();
                if owner.removed {
                    return Err(ApplyError::NodeRemoved(*node_id));
                }
                owner.renewed_ms = owner.renewed_ms.max(at_ms);
                let (taken_over_by, waiting_for) = self.spool_owners.takeovers_of(*node_id);
                let claimed = self.spool_owners.claimed_from(*node_id);
                Ok(Outcome::SpoolLease { taken_over_by, waiting_for, claimed })
            }
            TakeOverSpool { owner, by, queue_ids } => {
                let after_ms = self.settings.uint(key::QUEUE_TAKEOVER_AFTER_S).saturating_mul(1000);
                let under_way = self.spool_owners.takeovers.get(owner).is_some_and(|h| h.contains_key(by));
                if owner == by || !(under_way || self.spool_owners.may_take_over(*owner, at_ms, after_ms)) {
                    return Err(ApplyError::SpoolOwnerAlive(*owner));
                }
                let holders = self.spool_owners.takeovers.entry(*owner).or_default();
                holders.entry(*by).or_insert(crate::state::spool_owners::Takeover { at_ms, ..Default::default() });
                Ok(Outcome::SpoolClaims { granted: self.spool_owners.claim(*owner, *by, queue_ids, at_ms) })
            }
            SettleSpoolTakeover { owner, holder, promoted, acked } => {
                if self.spool_owners.settle(*owner, *holder, *promoted, *acked) {
                    Ok(Outcome::Done)
                } else {
                    Err(ApplyError::UnknownTakeover { owner: *owner, holder: *holder })
                }
            }
        }
    }

    fn add_dkim_key(&mut self, domain: &str, selector: &str, key: &DkimKey) -> Applied {
        let domain = self::domain("domain", domain)?;
        if !self.directory.domains.contains_key(&domain) {
            return Err(ApplyError::UnknownDomain(domain));
        }
        if !valid_selector(selector) {
            return Err(ApplyError::BadSelector(selector.to_string()));
        }
        let b64 = |text: &str| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text).is_ok();
        if !b64(&key.private_key) || !b64(&key.public_key) || key.public_key.is_empty() {
            return Err(ApplyError::BadDkimKey("private_key and public_key must be base64".into()));
        }
        let keys = self.dkim.domains.entry(domain.clone()).or_default();
        if keys.contains_key(selector) {
            return Err(ApplyError::SelectorExists { domain, selector: selector.to_string() });
        }
        let first = keys.is_empty();
        if key.active {
            keys.values_mut().for_each(|k| k.active = false);
        }
        keys.insert(selector.to_string(), DkimKey { active: key.active || first, ..key.clone() });
        Ok(Outcome::Done)
    }

    fn add_domain(&mut self, name: &str, at_ms: u64) -> Applied {
        let name = domain("name", name)?;
        if self.directory.is_local_domain(&name) || self.directory.relay_domains.contains_key(&name) {
            return Err(ApplyError::DomainExists(name));
        }
        self.directory.domains.insert(name.clone(), Domain { name, created_ms: at_ms, limits: Default::default() });
        Ok(Outcome::Done)
    }

    fn remove_domain(&mut self, name: &str) -> Applied {
        let name = domain("name", name)?;
        if !self.directory.domains.contains_key(&name) {
            return Err(ApplyError::UnknownDomain(name));
        }
        if self.directory.domain_in_use(&name) {
            return Err(ApplyError::DomainInUse(name));
        }
        self.directory.domains.remove(&name);
        self.dkim.domains.remove(&name);
        Ok(Outcome::Done)
    }

    fn add_domain_alias(&mut self, alias: &str, target: &str) -> Applied {
        let alias = domain("alias", alias)?;
        let target = domain("target", target)?;
        if !self.directory.domains.contains_key(&target) {
            return Err(ApplyError::UnknownDomain(target));
        }
        if self.directory.is_local_domain(&alias) || self.directory.relay_domains.contains_key(&alias) {
            return Err(ApplyError::DomainExists(alias));
        }
        self.directory.domain_aliases.insert(alias, target);
        Ok(Outcome::Done)
    }

    fn set_relay_domain(&mut self, name: &str, recipients: &[String]) -> Applied {
        let name = domain("domain", name)?;
        if self.directory.is_local_domain(&name) {
            return Err(ApplyError::DomainExists(name));
        }
        let mut list = BTreeSet::new();
        for r in recipients {
            let address = mail("recipients", r)?;
            if !address.ends_with(&format!("@{name}")) {
                let reason = format!("{address} is not in {name}");
                return Err(ApplyError::InvalidSetting { key: "recipients".into(), reason });
            }
            list.insert(address);
        }
        self.directory.relay_domains.insert(name, RelayDomain { recipients: list });
        Ok(Outcome::Done)
    }

    /// Parses an address that must sit in a local (not alias) domain and be free.
    fn new_local_address(&self, address: &str) -> Result<String, ApplyError> {
        let parsed =
            MailAddress::parse(address).map_err(|source| ApplyError::BadAddress { field: "address".into(), source })?;
        let domain = parsed.domain().to_string();
        if !self.directory.domains.contains_key(&domain) {
            return Err(ApplyError::UnknownDomain(domain));
        }
        let key = parsed.key();
        if self.directory.address_in_use(&key) {
            return Err(ApplyError::AddressInUse(key));
        }
        Ok(key)
    }

    fn add_user(&mut self, address: &str, display_name: &str, password_hash: &str, at_ms: u64) -> Applied {
        let key = self.new_local_address(address)?;
        check_hash(password_hash)?;
        if display_name.len() > 200 || display_name.chars().any(char::is_control) {
            return Err(ApplyError::BadDisplayName);
        }
        let user = User {
            address: key.clone(),
            display_name: display_name.to_string(),
            password_hash: password_hash.to_string(),
            enabled: true,
            frozen: false,
            overrides: Default::default(),
            created_ms: at_ms,
        };
        self.directory.users.insert(key, user);
        Ok(Outcome::Done)
    }

    fn remove_user(&mut self, address: &str) -> Applied {
        let key = mail("address", address)?;
        self.directory.users.remove(&key).ok_or_else(|| ApplyError::UnknownUser(key.clone()))?;
        for group in self.directory.groups.values_mut() {
            group.members.remove(&key);
        }
        self.counters.daily_quota.remove(&key);
        self.counters.hijack.remove(&key);
        Ok(Outcome::Done)
    }

    fn user_mut(&mut self, address: &str) -> Result<&mut User, ApplyError> {
        let key = mail("address", address)?;
        self.directory.users.get_mut(&key).ok_or(ApplyError::UnknownUser(key))
    }

    fn add_group(&mut self, address: &str) -> Applied {
        let key = self.new_local_address(address)?;
        self.directory.groups.insert(key.clone(), Group { address: key, members: BTreeSet::new() });
        Ok(Outcome::Done)
    }

    fn change_group(&mut self, group: &str, member: &str, add: bool) -> Applied {
        let group_key = mail("group", group)?;
        let member_key = mail("member", member)?;
        if add && !self.directory.users.contains_key(&member_key) {
            return Err(ApplyError::UnknownUser(member_key));
        }
        let group = self.directory.groups.get_mut(&group_key).ok_or(ApplyError::UnknownGroup(group_key))?;
        if add {
            group.members.insert(member_key);
        } else if !group.members.remove(&member_key) {
            return Err(ApplyError::NotAMember(member_key));
        }
        Ok(Outcome::Done)
    }

    fn add_alias(&mut self, address: &str, targets: &[String]) -> Applied {
        let key = self.new_local_address(address)?;
        if targets.is_empty() {
            return Err(ApplyError::NoTargets);
        }
        let targets = targets.iter().map(|t| mail("targets", t)).collect::<Result<BTreeSet<_>, _>>()?;
        self.directory.aliases.insert(key.clone(), Alias { address: key, targets });
        Ok(Outcome::Done)
    }

    /// Validates the whole document against an empty state, then swaps it in.
    fn import(&mut self, document: &ConfigDocument) -> Applied {
        if document.version != CONFIG_DOCUMENT_VERSION {
            return Err(ApplyError::UnsupportedDocument(document.version));
        }
        let mut staged =
            ClusterState { counters: self.counters.clone(), cluster: self.cluster.clone(), ..Default::default() };
        for command in document_commands(document) {
            staged.apply(&command, 0)?;
        }
        // Creation times survive an export/import round trip.
        staged.directory = document.directory.clone();
        // Rule ids too: the staged rules were numbered 1.. in the document's id order.
        let ids = document.rules.lists.keys().copied();
        staged.rules.lists = ids.zip(std::mem::take(&mut staged.rules.lists).into_values()).collect();
        let after_last = staged.rules.lists.keys().next_back().map_or(0, |id| id + 1);
        staged.rules.next_rule_id = document.rules.next_rule_id.max(after_last);
        staged.rules.version = self.rules.version + 1;
        staged.dkim = document.dkim.clone();
        staged.content = document.content.clone();
        staged.commands_applied = self.commands_applied;
        *self = staged;
        Ok(Outcome::Done)
    }

    fn greylist_attempt(&mut self, triplet: &str, delay_ms: u64, window_ms: u64, ttl_ms: u64, at_ms: u64) -> Applied {
        if triplet.is_empty() {
            return Err(ApplyError::EmptyTriplet);
        }
        let entry = self.counters.greylist.get_mut(triplet).filter(|t| t.expires_ms > at_ms);
        let verdict = match entry {
            Some(t) if t.passed_ms.is_some() => {
                t.expires_ms = at_ms.saturating_add(ttl_ms);
                t.attempts = t.attempts.saturating_add(1);
                GreylistVerdict::Passed
            }
            Some(t) if at_ms >= t.first_seen_ms.saturating_add(delay_ms) => {
                t.passed_ms = Some(at_ms);
                t.expires_ms = at_ms.saturating_add(ttl_ms);
                t.attempts = t.attempts.saturating_add(1);
                self.count_greylist_pass(triplet, ttl_ms, at_ms);
                GreylistVerdict::Passed
            }
            Some(t) => {
                t.attempts = t.attempts.saturating_add(1);
                GreylistVerdict::Deferred { retry_after_ms: t.first_seen_ms.saturating_add(delay_ms) }
            }
            None => {
                let fresh = GreylistTriplet {
                    first_seen_ms: at_ms,
                    passed_ms: None,
                    expires_ms: at_ms.saturating_add(window_ms),
                    attempts: 1,
                };
                self.counters.greylist.insert(triplet.to_string(), fresh);
                GreylistVerdict::Deferred { retry_after_ms: at_ms.saturating_add(delay_ms) }
            }
        };
        Ok(Outcome::Greylist(verdict))
    }

    /// A triplet passed for the first time: its client network earns a pass
    /// towards the auto-whitelist.
    fn count_greylist_pass(&mut self, triplet: &str, ttl_ms: u64, at_ms: u64) {
        let Some(network) = triplet.split(' ').next().filter(|n| !n.is_empty()) else { return };
        let client = self
            .counters
            .greylist_clients
            .entry(network.to_string())
            .or_insert(GreylistClient { passes: 0, expires_ms: 0 });
        if client.expires_ms <= at_ms {
            client.passes = 0;
        }
        client.passes = client.passes.saturating_add(1);
        client.expires_ms = at_ms.saturating_add(ttl_ms);
    }

    /// Counts one abuse from `ip` in its window; at `threshold` the IP is
    /// blocked on every node for `block_ms` and its count restarts.
    fn count_ip(
        &mut self,
        abuse: IpAbuse,
        ip: &str,
        threshold: u32,
        window_ms: u64,
        block_ms: u64,
        at_ms: u64,
    ) -> Result<(u32, bool), ApplyError> {
        let ip: IpAddr = ip.parse().map_err(|_| ApplyError::BadIp(ip.to_string()))?;
        let key = ip.to_string();
        let table = match abuse {
            IpAbuse::UnknownRecipients => &mut self.counters.unknown_recipients,
            IpAbuse::FailedLogins => &mut self.counters.failed_logins,
        };
        let fresh = UnknownRecipients { window_start_ms: at_ms, count: 0, expires_ms: at_ms.saturating_add(window_ms) };
        let counter = table.entry(key.clone()).or_insert_with(|| fresh.clone());
        if counter.expires_ms <= at_ms {
            *counter = fresh;
        }
        counter.count = counter.count.saturating_add(1);
        let count = counter.count;
        let blocked = threshold > 0 && count >= threshold;
        if blocked {
            table.remove(&key);
            let reason = match abuse {
                IpAbuse::UnknownRecipients => format!("{count} unknown recipients"),
                IpAbuse::FailedLogins => format!("{count} failed logins"),
            };
            self.counters.blocked_ips.insert(key, BlockedIp { until_ms: at_ms.saturating_add(block_ms), reason });
        }
        Ok((count, blocked))
    }

    /// Checks every imported rule first, then adds them (or replaces the
    /// table with them): a bad rule anywhere changes nothing.
    fn import_rules(&mut self, rules: &[ListRule], replace: bool) -> Applied {
        let mut staged = if replace {
            RuleSets { lists: Default::default(), next_rule_id: self.rules.next_rule_id, version: self.rules.version }
        } else {
            self.rules.clone()
        };
        let (mut added, mut skipped) = (0, 0);
        for (index, rule) in rules.iter().enumerate() {
            match staged.add(rule.clone()) {
                Ok(_) => added += 1,
                Err(AddRuleError::Exists(_)) => skipped += 1,
                Err(AddRuleError::Bad(e)) => {
                    return Err(ApplyError::BadImportedRule { index, field: e.field.to_string(), reason: e.reason })
                }
            }
        }
        staged.version = self.rules.version + 1;
        self.rules = staged;
        Ok(Outcome::RulesImported { added, skipped })
    }

    /// Like `import_rules`, for the attachment filter.
    fn import_attachment_rules(&mut self, rules: &[AttachmentRule], replace: bool) -> Applied {
        let mut staged = if replace {
            ContentFilters { attachments: Default::default(), next_id: self.content.next_id }
        } else {
            self.content.clone()
        };
        let (mut added, mut skipped) = (0, 0);
        for (index, rule) in rules.iter().enumerate() {
            match staged.add(rule.clone()) {
                Ok(_) => added += 1,
                Err(AddAttachmentRuleError::Exists(_)) => skipped += 1,
                Err(AddAttachmentRuleError::Bad(e)) => {
                    return Err(ApplyError::BadImportedRule { index, field: e.field.to_string(), reason: e.reason })
                }
            }
        }
        self.content = staged;
        Ok(Outcome::RulesImported { added, skipped })
    }

    fn charge_quota(&mut self, user: &str, messages: u32, bytes: u64, at_ms: u64) -> Applied {
        let user = mail("user", user)?;
        let (messages_max, bytes_max) = self.daily_limits(&user);
        let entry = self.counters.daily_quota.entry(user).or_default();
        // Proposers' clocks disagree a little. Around midnight a lagging one
        // would move the day back and reset the count; the day only goes
        // forward, so a skewed charge counts against the newer day instead.
        // (The simulator found this: see docs/operations/simulator.md.)
        let day = (at_ms / DAY_MS).max(entry.day);
        if entry.day != day {
            *entry = DailyQuota { day, messages: 0, bytes: 0 };
        }
        let total_messages = entry.messages.saturating_add(messages);
        let total_bytes = entry.bytes.saturating_add(bytes);
        let over = |total: u64, max: u64| max != 0 && total > max;
        if over(total_messages.into(), messages_max.into()) || over(total_bytes, bytes_max) {
            let (messages, bytes) = (entry.messages, entry.bytes);
            return Ok(Outcome::QuotaExceeded { messages, bytes, messages_max, bytes_max, day });
        }
        entry.messages = total_messages;
        entry.bytes = total_bytes;
        Ok(Outcome::QuotaCharged { messages: total_messages, bytes: total_bytes })
    }

    /// A user's daily limits (0: none): the user's own, else their
    /// domain's, else the cluster's.
    pub fn daily_limits(&self, user: &str) -> (u32, u64) {
        let overrides = self.directory.users.get(user).map(|u| &u.overrides);
        let domain = user.rsplit_once('@').and_then(|(_, d)| self.directory.domains.get(d)).map(|d| &d.limits);
        let settings = &self.settings;
        let messages = overrides
            .and_then(|o| o.daily_messages_max)
            .or(domain.and_then(|d| d.daily_messages_max))
            .unwrap_or_else(|| settings.uint32(key::QUOTA_DAILY_MESSAGES_MAX));
        let bytes = overrides
            .and_then(|o| o.daily_bytes_max)
            .or(domain.and_then(|d| d.daily_bytes_max))
            .unwrap_or_else(|| settings.uint(key::QUOTA_DAILY_BYTES_MAX));
        (messages, bytes)
    }

    /// The smallest attachment `user`'s outbound mail links instead of
    /// carrying: the user's own setting, else the domain's, else
    /// `attachment_links.bytes_min`; 0 means never.
    pub fn attachment_link_threshold(&self, user: &str) -> u64 {
        let own = self.directory.users.get(user).and_then(|u| u.overrides.attachment_link_bytes_min);
        let domain = user
            .rsplit_once('@')
            .and_then(|(_, d)| self.directory.domains.get(d))
            .and_then(|d| d.limits.attachment_link_bytes_min);
        own.or(domain).unwrap_or_else(|| self.settings.uint(key::ATTACHMENT_LINKS_BYTES_MIN))
    }

    fn add_attachment_link(&mut self, token_sha256: &str, link: &AttachmentLink, at_ms: u64) -> Applied {
        use crate::state::attachment_links::{bounded_text, LINKS_MAX, LINK_NAME_BYTES_MAX};
        self.attachment_links.expire(at_ms);
        if self.attachment_links.links.len() >= LINKS_MAX {
            return Err(ApplyError::TooManyAttachmentLinks(LINKS_MAX));
        }
        let link = AttachmentLink {
            user: mail("user", &link.user)?,
            file_name: bounded_text(&link.file_name, LINK_NAME_BYTES_MAX),
            content_type: bounded_text(&link.content_type, LINK_NAME_BYTES_MAX),
            created_ms: at_ms,
            downloads: 0,
            last_download_ms: None,
            ..link.clone()
        };
        self.attachment_links.links.insert(token_sha256.to_string(), link);
        Ok(Outcome::Done)
    }

    fn increment_hijack(&mut self, user: &str, client: &str, at_ms: u64) -> Applied {
        let key = mail("user", user)?;
        let messages_max = self.settings.uint32(key::HIJACK_MESSAGES_MAX);
        if messages_max == 0 {
            return Ok(Outcome::HijackCount { count: 0 });
        }
        let window_ms = self.settings.uint(key::HIJACK_WINDOW_S).saturating_mul(1000);
        let freeze = self.settings.flag(key::HIJACK_FREEZE);
        let counter = self.counters.hijack.entry(key.clone()).or_default();
        if at_ms >= counter.expires_ms {
            let expires_ms = at_ms.saturating_add(window_ms);
            *counter = HijackCounter { window_start_ms: at_ms, expires_ms, ..Default::default() };
        }
        if counter.clients.len() < HIJACK_CLIENTS_MAX {
            counter.clients.insert(client.chars().filter(|c| !c.is_control()).take(80).collect());
        }
        if counter.count < messages_max {
            counter.count += 1;
            return Ok(Outcome::HijackCount { count: counter.count });
        }
        let first = !std::mem::replace(&mut counter.detected, true);
        let (count, clients) = (counter.count, counter.clients.iter().cloned().collect());
        let frozen = match self.directory.users.get_mut(&key) {
            Some(u) => {
                u.frozen |= freeze;
                u.frozen
            }
            None => false,
        };
        Ok(Outcome::HijackDetected { count, window_ms, frozen, first, clients })
    }

    fn redeem_join_token(&mut self, token_sha256: &str, raft_addr: &str, admin_addr: &str, at_ms: u64) -> Applied {
        match self.cluster.join_tokens.get(token_sha256) {
            Some(t) if t.expires_ms > at_ms => {}
            _ => return Err(ApplyError::BadJoinToken),
        }
        self.cluster.join_tokens.remove(token_sha256);
        let node_id = self.cluster.next_node_id;
        self.cluster.next_node_id += 1;
        let record =
            NodeRecord { raft_addr: raft_addr.to_string(), admin_addr: admin_addr.to_string(), joined_ms: at_ms };
        self.cluster.nodes.insert(node_id, record);
        Ok(Outcome::NodeAdmitted { node_id })
    }
}

/// What a client IP is counted for, towards a block on every node.
enum IpAbuse {
    UnknownRecipients,
    FailedLogins,
}

/// The commands that would rebuild a document's contents on an empty state,
/// used to validate an import with the same checks as single commands.
fn document_commands(document: &ConfigDocument) -> Vec<Command> {
    let mut out = Vec::new();
    for (key, value) in document.settings.values() {
        out.push(Command::SetSetting { key: key.clone(), value: value.clone() });
    }
    let dir = &document.directory;
    for name in dir.domains.keys() {
        out.push(Command::AddDomain { name: name.clone() });
    }
    for (alias, target) in &dir.domain_aliases {
        out.push(Command::AddDomainAlias { alias: alias.clone(), target: target.clone() });
    }
    for user in dir.users.values() {
        out.push(Command::AddUser {
            address: user.address.clone(),
            display_name: user.display_name.clone(),
            password_hash: user.password_hash.clone(),
        });
    }
    for group in dir.groups.values() {
        out.push(Command::AddGroup { address: group.address.clone() });
        for member in &group.members {
            out.push(Command::AddGroupMember { group: group.address.clone(), member: member.clone() });
        }
    }
    for alias in dir.aliases.values() {
        out.push(Command::AddAlias {
            address: alias.address.clone(),
            targets: alias.targets.iter().cloned().collect(),
        });
    }
    for rule in document.rules.lists.values() {
        out.push(Command::AddListRule { rule: rule.clone() });
    }
    out
}

fn domain(field: &'static str, raw: &str) -> Result<String, ApplyError> {
    DomainName::parse(raw)
        .map(|d| d.to_string())
        .map_err(|source| ApplyError::BadAddress { field: field.into(), source })
}

fn mail(field: &'static str, raw: &str) -> Result<String, ApplyError> {
    MailAddress::parse(raw).map(|a| a.key()).map_err(|source| ApplyError::BadAddress { field: field.into(), source })
}

fn check_hash(hash: &str) -> Result<(), ApplyError> {
    if hash.starts_with("$argon2id$") && hash.len() < 512 && !hash.chars().any(char::is_whitespace) {
        Ok(())
    } else {
        Err(ApplyError::BadPasswordHash)
    }
}
