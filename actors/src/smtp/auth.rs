//! SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms: the
//! dialog only. Checking the password is the shell's job (it needs the
//! directory and an argon2 verification off the session thread).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::message::Reply;

/// Where an AUTH exchange stands while the client owes us a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDialog {
    /// "AUTH PLAIN" without an initial response: waiting for it.
    Plain,
    /// "AUTH LOGIN": waiting for the user name.
    LoginUser,
    /// "AUTH LOGIN": waiting for the password.
    LoginPassword { username: String },
}

/// What the session does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this 334 challenge and keep the dialog open.
    Challenge(AuthDialog, Reply),
    /// Check these credentials.
    Credentials {
        username: String,
        password: String,
    },
    Failed(Reply),
}

fn malformed() -> AuthStep {
    AuthStep::Failed(Reply::new(501, "5.5.2", "Cannot decode the authentication response"))
}

fn decode(text: &str) -> Option<String> {
    STANDARD.decode(text.trim()).ok().and_then(|b| String::from_utf8(b).ok())
}

/// authzid NUL authcid NUL password; an authzid other than the authcid is refused.
fn plain_credentials(text: &str) -> AuthStep {
    let Some(decoded) = decode(text) else { return malformed() };
    let mut parts = decoded.split('\0');
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return malformed();
    };
    if !authzid.is_empty() && authzid != user {
        return AuthStep::Failed(Reply::new(535, "5.7.8", "Authentication credentials invalid"));
    }
    AuthStep::Credentials { username: user.to_string(), password: password.to_string() }
}

/// The first step, from the AUTH command.
pub fn start(mechanism: u64, initial_response: &str) -> AuthStep {
    if mechanism == smtp_proto::AUTH_PLAIN {
        return match initial_response {
            "" => AuthStep::Challenge(AuthDialog::Plain, Reply::new(334, "", "")),
            "=" => malformed(),
            text => plain_credentials(text),
        };
    }
    if mechanism == smtp_proto::AUTH_LOGIN {
        if initial_response.is_empty() {
            return AuthStep::Challenge(AuthDialog::LoginUser, Reply::new(334, "", "VXNlcm5hbWU6"));
        }
        return match decode(initial_response) {
            Some(username) => password_challenge(username),
            None => malformed(),
        };
    }
    AuthStep::Failed(Reply::new(504, "5.5.4", "Unrecognized authentication mechanism"))
}

fn password_challenge(username: String) -> AuthStep {
    AuthStep::Challenge(AuthDialog::LoginPassword { username }, Reply::new(334, "", "UGFzc3dvcmQ6"))
}

/// The next step, from a client line inside the dialog.
pub fn next(dialog: AuthDialog, line: &[u8]) -> AuthStep {
    let Ok(text) = std::str::from_utf8(line) else { return malformed() };
    if text == "*" {
        return AuthStep::Failed(Reply::new(501, "5.0.0", "Authentication cancelled"));
    }
    match dialog {
        AuthDialog::Plain => plain_credentials(text),
        AuthDialog::LoginUser => decode(text).map(password_challenge).unwrap_or_else(malformed),
        AuthDialog::LoginPassword { username } => match decode(text) {
            Some(password) => AuthStep::Credentials { username, password },
            None => malformed(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn plain_and_login_dialogs() {
        let creds = |u: &str, p: &str| AuthStep::Credentials { username: u.into(), password: p.into() };
        assert_eq!(
            start(smtp_proto::AUTH_PLAIN, &b64("\0alice@example.com\0secret")),
            creds("alice@example.com", "secret")
        );
        assert_eq!(start(smtp_proto::AUTH_PLAIN, &b64("alice\0alice\0pw")), creds("alice", "pw"));
        assert!(matches!(start(smtp_proto::AUTH_PLAIN, &b64("bob\0alice\0pw")), AuthStep::Failed(r) if r.code == 535));
        assert!(matches!(start(smtp_proto::AUTH_PLAIN, "!!!"), AuthStep::Failed(r) if r.code == 501));
        let AuthStep::Challenge(d, r) = start(smtp_proto::AUTH_PLAIN, "") else { panic!() };
        assert_eq!(r.render(), b"334 \r\n");
        assert_eq!(next(d, b64("\0u\0p").as_bytes()), creds("u", "p"));
        let AuthStep::Challenge(d, _) = start(smtp_proto::AUTH_LOGIN, "") else { panic!() };
        let AuthStep::Challenge(d, r) = next(d, b64("alice").as_bytes()) else { panic!() };
        assert_eq!(r.render(), b"334 UGFzc3dvcmQ6\r\n");
        assert_eq!(next(d.clone(), b64("pw").as_bytes()), creds("alice", "pw"));
        assert!(matches!(next(d, b"*"), AuthStep::Failed(r) if r.code == 501));
        assert!(matches!(start(1, ""), AuthStep::Failed(r) if r.code == 504));
    }
}
