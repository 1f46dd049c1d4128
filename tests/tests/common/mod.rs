//! Runs real `gatehouse` processes on loopback for the integration tests.
//! Each node gets its own data directory, config file and free ports; every
//! process is killed when its `Node` is dropped, so a failing test leaves
//! nothing running.
#![allow(dead_code)]

pub mod mime;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: target/<profile>/gatehouse next to the test executable's deps/.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("GATEHOUSE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("gatehouse");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "gatehouse", "--bin", "gatehouse"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building gatehouse failed");
    }
    bin
}

/// A port no other test process holds. Ports come from 20000..32000, below
/// Linux's ephemeral range, so client sockets never take them between the
/// reservation and the node's bind; each one is claimed with an O_EXCL file
/// named after it, and a claim whose owner process is gone is taken over.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let claims = std::env::temp_dir().join("gatehouse-test-ports");
    std::fs::create_dir_all(&claims).expect("port claims dir");
    let pid = std::process::id();
    for _ in 0..20_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((pid.wrapping_mul(7919).wrapping_add(n.wrapping_mul(104_729))) % 12_000) as u16;
        let claim = claims.join(port.to_string());
        let create = || {
            std::fs::OpenOptions::new().write(true).create_new(true).open(&claim).map(|mut f| {
                use std::io::Write;
                let _ = write!(f, "{pid}");
            })
        };
        let owned = create().is_ok() || {
            // A claim being written right now reads empty; only a parsed, dead pid is stale.
            let owner = std::fs::read_to_string(&claim).unwrap_or_default();
            let stale = owner.trim().parse::<u32>().is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists());
            stale && std::fs::remove_file(&claim).is_ok() && create().is_ok()
        };
        if owned && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub raft: String,
    pub admin: String,
    pub smtp_ports: SmtpPorts,
    log: PathBuf,
    child: Option<Child>,
    /// The node's empty DNS server, when the test gave it none.
    _dns: Option<Daemon>,
}

impl Node {
    /// Writes a config with fast Raft timings plus `extra` lines in `[cluster]`.
    pub fn new(root: &Path, name: &str, extra: &str) -> Self {
        Self::new_on(root, name, extra, "127.0.0.1", free_port())
    }

    /// Like `new`, with the MX listener on `smtp_ip:smtp_port` (a receiving
    /// MTA at an address of its own on 127.0.0.0/8).
    pub fn new_on(root: &Path, name: &str, extra: &str, smtp_ip: &str, smtp_port: u16) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let raft = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let config = root.join(format!("{name}.toml"));
        let smtp_ports = SmtpPorts { smtp: smtp_port, submission: free_port(), smtps: free_port() };
        // Tests never ask the machine's resolver: a test that needs records
        // starts dnsmasq and names it in `extra`; every other node gets its
        // own dnsmasq that answers NXDOMAIN to everything, at once.
        let (dns, dns_daemon) = if extra.contains("[dns]") {
            (String::new(), None)
        } else {
            let port = free_port();
            let daemon = dns_server(port, &["--local=/#/".to_string()]);
            (format!("[dns]\nnameservers = [\"127.0.0.1:{port}\"]\n"), Some(daemon))
        };
        let text = format!(
            "data_dir = {:?}\n[admin]\nlisten = {admin:?}\n[log]\nfilter = \"info,openraft=warn\"\n\
             [smtp]\nlisten = \"{smtp_ip}:{}\"\nsubmission_listen = \"127.0.0.1:{}\"\nsmtps_listen = \"127.0.0.1:{}\"\n\
             [cluster]\nraft_listen = {raft:?}\nheartbeat_ms = 50\nelection_timeout_min_ms = 300\n\
             election_timeout_max_ms = 600\n{extra}\n{dns}",
            dir.join("data"),
            smtp_ports.smtp,
            smtp_ports.submission,
            smtp_ports.smtps,
        );
        std::fs::write(&config, text).expect("write config");
        let log = root.join(format!("{name}.log"));
        Self { name: name.into(), dir, config, raft, admin, smtp_ports, log, child: None, _dns: dns_daemon }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Appends a `[smtp.limits]` table with these `key = value` lines (before the node starts).
    pub fn set_smtp_limits(&self, lines: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        std::fs::write(&self.config, format!("{text}\n[smtp.limits]\n{lines}\n")).expect("write config");
    }

    /// Adds a line to the config's `[smtp]` table (before the node starts).
    pub fn set_smtp_option(&self, line: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        std::fs::write(&self.config, text.replacen("[smtp]\n", &format!("[smtp]\n{line}\n"), 1)).expect("write config");
    }

    fn spawn(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn gatehouse");
        self.child = Some(child);
    }

    pub fn serve(&mut self) {
        self.spawn(&["serve"]);
        self.wait_ready();
    }

    pub fn join(&mut self, token: &str, seed: &str) {
        self.spawn(&["join", "--token", token, "--seed", seed]);
        self.wait_ready();
    }

    /// kill -9: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Waits until the admin API answers `cluster status`.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if self.cli(&["cluster", "status"]).status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "{} never became ready; log:\n{}", self.name, self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary()).arg("-c").arg(&self.config).arg("--json").args(args).output().expect("run cli")
    }

    /// Runs a CLI command that must succeed and returns its JSON.
    pub fn ok(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{} {:?} failed: {}\nlog:\n{}",
            self.name,
            args,
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        serde_json::from_slice(&out.stdout).expect("json output")
    }

    /// Runs a CLI command; Err(stderr) when it fails.
    pub fn try_ok(&self, args: &[&str]) -> Result<Value, String> {
        let out = self.cli(args);
        if out.status.success() {
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn status(&self) -> Value {
        self.ok(&["cluster", "status"])
    }

    pub fn domains(&self) -> Vec<String> {
        let v = self.ok(&["domain", "list"]);
        v.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap().to_string()).collect()
    }

    pub fn token(&self) -> String {
        self.ok(&["cluster", "add-node"])["token"].as_str().unwrap().to_string()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `f` every 50 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a 3-node cluster (node 1 creates it, 2 and 3 join through it).
pub fn three_nodes(root: &Path, extra: &str) -> Vec<Node> {
    let mut n1 = Node::new(root, "n1", extra);
    n1.serve();
    let mut nodes = vec![n1];
    for name in ["n2", "n3"] {
        let token = nodes[0].token();
        let mut n = Node::new(root, name, extra);
        n.join(&token, &nodes[0].raft.clone());
        nodes.push(n);
    }
    nodes
}

/// The id of the leader as `node` sees it.
pub fn leader_id(node: &Node) -> Option<u64> {
    node.try_ok(&["cluster", "status"]).ok()?.get("leader")?.as_u64()
}

/// This node's id.
pub fn node_id(node: &Node) -> u64 {
    node.status()["node_id"].as_u64().unwrap()
}

/// Ports of a node's SMTP listeners.
#[derive(Debug, Clone, Copy)]
pub struct SmtpPorts {
    pub smtp: u16,
    pub submission: u16,
    pub smtps: u16,
}

/// A single node with its SMTP listeners on free ports, domain example.com
/// and user alice@example.com (password "correct horse").
pub fn smtp_node(root: &Path) -> (Node, SmtpPorts) {
    smtp_node_with(root, |_| {})
}

/// Like `smtp_node`, with `configure` editing the node's config file first.
pub fn smtp_node_with(root: &Path, configure: impl FnOnce(&Node)) -> (Node, SmtpPorts) {
    let mut n = Node::new(root, "n1", "");
    configure(&n);
    let ports = n.smtp_ports;
    n.serve();
    n.ok(&["domain", "add", "example.com"]);
    n.ok(&["user", "add", "alice@example.com", "--password", "correct horse"]);
    n.ok(&["config", "set", "smtp.hostname", "mx.example.com"]);
    (n, ports)
}

/// The files in a user's Maildir `new/`, oldest name first.
pub fn maildir_files(node: &Node, user: &str) -> Vec<Vec<u8>> {
    files_in(&node.dir.join("data/mail/example.com").join(user).join("new"))
}

/// The contents of the files in `dir`, sorted by name; none if it does not exist.
pub fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Waits until every acknowledged id is in `delivered()` (id → copies), then
/// asserts none was delivered twice; returns the final counts.
pub fn assert_each_acked_delivered_once(
    acked: &[String],
    limit: Duration,
    delivered: impl Fn() -> std::collections::BTreeMap<String, usize>,
) -> std::collections::BTreeMap<String, usize> {
    let ids = wait_for(limit, || {
        let ids = delivered();
        acked.iter().all(|a| ids.contains_key(a)).then_some(ids)
    })
    .unwrap_or_else(|| {
        let ids = delivered();
        let missing: Vec<_> = acked.iter().filter(|a| !ids.contains_key(*a)).collect();
        panic!("{} acknowledged messages missing after restart: {:?}", missing.len(), &missing[..missing.len().min(5)]);
    });
    let duplicated: Vec<_> = ids.iter().filter(|(_, c)| **c > 1).collect();
    assert!(duplicated.is_empty(), "delivered twice: {duplicated:?}");
    ids
}

/// Runs a Python script, fed on stdin: a script carrying a large message
/// would pass the kernel's limit on one argument.
pub fn python(script: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdin = child.stdin.take().expect("python3 stdin");
    let script = script.to_string();
    // Written from a thread: a script that prints a lot before reading all of
    // its input must not deadlock against us.
    let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let out = child.wait_with_output().expect("python3");
    writer.join().expect("python3 writer").expect("writing the python script");
    out
}

/// A helper process (DNS server, peer MTA) killed when dropped.
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// Starts `command` (output discarded) and waits until it accepts TCP on
    /// 127.0.0.1:`port`; `what` names it (and its package) in failures.
    pub fn start(command: &mut Command, port: u16, what: &str) -> Result<Daemon, String> {
        let child =
            command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        let daemon = Daemon(child);
        let up = wait_for(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        match up {
            Some(_) => Ok(daemon),
            None => Err(format!("{what} did not listen on port {port}")),
        }
    }
}

/// dnsmasq on 127.0.0.1:`port` serving only the records given as dnsmasq
/// options (`--mx-host=...`, `--host-record=...`, `--txt-record=...`).
pub fn dns_server(port: u16, records: &[String]) -> Daemon {
    let mut command = Command::new("dnsmasq");
    command
        .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces"])
        .args(["--listen-address=127.0.0.1", "--user=root", "--pid-file=", "--log-facility=-"])
        .arg(format!("--port={port}"))
        .args(records);
    Daemon::start(&mut command, port, "dnsmasq (scripts/test installs dnsmasq-base)").unwrap_or_else(|e| panic!("{e}"))
}

/// One SMTP conversation from the client address `source` to 127.0.0.1:`port`:
/// the greeting, then (if it was 220) EHLO, MAIL FROM `sender`, a RCPT per
/// recipient, and DATA if any was accepted. One line per reply:
/// `GREETING 220 ...`, `RCPT 451 ...`, `DATA 250 ...`.
pub fn converse(port: u16, source: &str, sender: &str, rcpts: &[&str]) -> String {
    let rcpts: Vec<String> = rcpts.iter().map(|r| format!("{r:?}")).collect();
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP(timeout=10, source_address=("{source}", 0))
code, text = s.connect("127.0.0.1", {port})
print("GREETING", code, text.decode())
if code == 220:
    s.ehlo("client.example.org")
    s.mail("{sender}")
    ok = 0
    for r in [{rcpts}]:
        code, text = s.rcpt(r)
        print("RCPT", code, text.decode())
        ok += code == 250
    if ok:
        code, text = s.data(b"Subject: screening\r\n\r\nhello\r\n")
        print("DATA", code, text.decode())
    s.quit()
"#,
        rcpts = rcpts.join(", ")
    );
    let out = python(&script);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // A refused greeting closes the connection, which smtplib may report as an error.
    let refused_at_greeting = stdout.starts_with("GREETING") && !stdout.contains("GREETING 220");
    assert!(out.status.success() || refused_at_greeting, "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// One message through smtplib to 127.0.0.1:`port`, after a STARTTLS login
/// as `login` (password "correct horse") when given; every recipient must be accepted.
pub fn submit(port: u16, from: &str, login: Option<&str>, to: &[&str], subject: &str) {
    let auth = match login {
        Some(user) => format!("s.starttls(); s.ehlo('client.example.org'); s.login('{user}', 'correct horse')"),
        None => "pass".into(),
    };
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=20)
s.ehlo("client.example.org")
{auth}
body = b"From: <{from}>\r\nSubject: {subject}\r\n\r\nrelay me\r\n.dot line\r\n"
refused = s.sendmail("{from}", {to:?}, body)
assert refused == {{}}, refused
s.quit()
"#
    );
    let out = python(&script);
    assert!(out.status.success(), "submit failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Sends `message` (raw bytes, CRLF line ends) from `from` to `to` over SMTP
/// to 127.0.0.1:`port` and returns the reply to the end of DATA as
/// `"250 2.0.0 ..."` (or the refusal of an earlier step).
pub fn send_raw(port: u16, from: &str, to: &[&str], message: &[u8]) -> String {
    let file = std::env::temp_dir().join(format!("gatehouse-msg-{}-{}", std::process::id(), free_port()));
    std::fs::write(&file, message).expect("write message");
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=60)
s.ehlo("client.example.org")
code, text = s.mail("{from}")
if code != 250:
    print(code, text.decode()); raise SystemExit
for r in {to:?}:
    code, text = s.rcpt(r)
    if code != 250:
        print(code, text.decode()); raise SystemExit
code, text = s.data(open({file:?}, "rb").read())
print(code, text.decode())
s.quit()
"#,
        file = file.display().to_string()
    );
    let out = python(&script);
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "send_raw: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A clamd of the test's own (Debian `clamav-daemon`) on 127.0.0.1:`port`,
/// loading only the signatures in `db` (no download is possible here).
pub fn clamd(dir: &Path, port: u16) -> Daemon {
    let db = dir.join("db");
    std::fs::create_dir_all(&db).expect("mkdir clamd db");
    if std::fs::read_dir(&db).map(|mut d| d.next().is_none()).unwrap_or(true) {
        std::fs::write(db.join("gatehouse-test.ndb"), eicar_signature()).expect("write signature");
    }
    let conf = dir.join("clamd.conf");
    std::fs::write(
        &conf,
        format!(
            "TCPSocket {port}\nTCPAddr 127.0.0.1\nDatabaseDirectory {}\nForeground yes\nLogFile {}\n\
             StreamMaxLength 25M\nTemporaryDirectory {}\nPidFile {}\n",
            db.display(),
            dir.join("clamd.log").display(),
            dir.display(),
            dir.join("clamd.pid").display()
        ),
    )
    .expect("write clamd.conf");
    let mut command = Command::new("clamd");
    command.arg(format!("--config-file={}", conf.display()));
    Daemon::start(&mut command, port, "clamd (scripts/test installs clamav-daemon)").unwrap_or_else(|e| panic!("{e}"))
}

/// The EICAR test string (assembled, so no scanner flags this source file).
pub fn eicar() -> Vec<u8> {
    let mut s = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR".to_vec();
    s.extend_from_slice(b"-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    s
}

/// An `.ndb` signature for the EICAR string, named `Gatehouse.Test.Eicar`.
pub fn eicar_signature() -> String {
    let hex: String = eicar().iter().map(|b| format!("{b:02x}")).collect();
    format!("Gatehouse.Test.Eicar:0:*:{hex}\n")
}

/// smtp-sink on ip:port; `reject` is e.g. `["-f", "rcpt"]`; messages are dumped into `dump` if given.
pub fn smtp_sink(ip: &str, port: u16, reject: &[&str], dump: Option<&Path>) -> Daemon {
    let mut cmd = Command::new("smtp-sink");
    cmd.args(["-u", "nobody"]).args(reject);
    if let Some(dir) = dump {
        cmd.arg("-d").arg(dir.join("%H%M%S."));
    }
    let child = cmd
        .arg(format!("{ip}:{port}"))
        .arg("20")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink (postfix package)");
    let daemon = Daemon(child);
    let up = wait_for(Duration::from_secs(5), || std::net::TcpStream::connect((ip, port)).ok());
    assert!(up.is_some(), "smtp-sink did not start on {ip}:{port}");
    daemon
}

/// Sends `count` messages from `from` to `to` through `ports` in turn, each
/// in its own session (STARTTLS and AUTH as `login` with "correct horse"
/// when given); returns each end-of-DATA reply ("250 ...", "452 ...") or
/// `ERR port kind text` for a session that failed before it (a refused
/// login, a dead node).
pub fn send_each(ports: &[u16], login: Option<&str>, from: &str, to: &str, count: usize, body: &str) -> Vec<String> {
    let login = match login {
        Some(user) => format!("s.starttls(); s.ehlo('client.example.org'); s.login('{user}', 'correct horse')"),
        None => "pass".into(),
    };
    let script = format!(
        r#"
import smtplib, sys
ports = {ports:?}
body = {body:?}.encode()
for i in range({count}):
    port = ports[i % len(ports)]
    try:
        s = smtplib.SMTP("127.0.0.1", port, timeout=20)
        s.ehlo("client.example.org")
        {login}
        code, text = s.mail("{from}")
        if code != 250:
            print(code, text.decode().replace("\n", " ")); s.quit(); continue
        code, text = s.rcpt("{to}")
        if code != 250:
            print(code, text.decode().replace("\n", " ")); s.quit(); continue
        code, text = s.data(body)
        print(code, text.decode().replace("\n", " "))
        s.quit()
    except Exception as e:
        print("ERR", port, type(e).__name__, str(e).replace("\n", " "))
    sys.stdout.flush()
"#
    );
    let out = python(&script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// An smtp-sink on `ip` (a free port) that keeps every message it gets in
/// `root/sink` (it runs as nobody: `root` is made readable for it).
/// Returns the daemon, its port and the directory.
pub fn keeping_sink(root: &Path, ip: &str) -> (Daemon, u16, PathBuf) {
    let port = free_port();
    (keeping_sink_on(root, ip, port), port, root.join("sink"))
}

/// Like `keeping_sink`, on a port chosen before (a smarthost that comes up late).
pub fn keeping_sink_on(root: &Path, ip: &str, port: u16) -> Daemon {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod root");
    let dump = root.join("sink");
    std::fs::create_dir(&dump).expect("mkdir sink");
    std::fs::set_permissions(&dump, std::fs::Permissions::from_mode(0o777)).expect("chmod sink");
    smtp_sink(ip, port, &[], Some(&dump))
}
