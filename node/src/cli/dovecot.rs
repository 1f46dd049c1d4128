//! `gatehouse dovecot-checkpassword`: Dovecot's checkpassword passdb
//! (`passdb { driver = checkpassword; args = ... }`). Dovecot writes
//! `user\0password\0` on fd 3 and passes the program to run on success
//! (checkpassword-reply); its environment carries SERVICE and TCPREMOTEIP.
//! The login is checked by this node's admin API against the cluster's
//! accounts; exit 1 refuses it, 111 is a temporary failure.

use std::io::Read;
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;

use serde_json::json;

use crate::config::NodeConfig;

/// Longest `user\0password\0` read from Dovecot.
const INPUT_BYTES_MAX: u64 = 2048;

pub fn checkpassword(
    config: &NodeConfig,
    token_file: Option<&std::path::Path>,
    reply: &[String],
) -> anyhow::Result<()> {
    let Some((program, args)) = reply.split_first() else {
        eprintln!("gatehouse dovecot-checkpassword: Dovecot passes the reply program as the first argument");
        std::process::exit(111);
    };
    // SAFETY: the checkpassword protocol opens fd 3 for us; nothing else in
    // this process uses it, and it is read once here.
    let mut input = Vec::new();
    let read = unsafe { std::fs::File::from_raw_fd(3) }.take(INPUT_BYTES_MAX).read_to_end(&mut input);
    if read.is_err() {
        eprintln!("gatehouse dovecot-checkpassword: nothing to read on fd 3");
        std::process::exit(111);
    }
    let mut fields = input.split(|b| *b == 0);
    let username = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let password = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let body = json!({
        "username": username,
        "password": password,
        "service": std::env::var("SERVICE").unwrap_or_default(),
        "remote_ip": std::env::var("TCPREMOTEIP").unwrap_or_default(),
    });
    let answer = crate::cli::admin_client(config, token_file).and_then(|client| client.post("auth/check", body));
    match answer {
        Ok(a) if a["ok"] == true => {
            let user = a["user"].as_str().unwrap_or(&username).to_string();
            let error = std::process::Command::new(program).args(args).env("USER", user).exec();
            eprintln!("gatehouse dovecot-checkpassword: running {program}: {error}");
            std::process::exit(111);
        }
        Ok(_) => std::process::exit(1),
        Err(e) => {
            eprintln!("gatehouse dovecot-checkpassword: {e:#}");
            std::process::exit(111);
        }
    }
}
