//! Checks an SMTP AUTH login against the replicated directory.
//!
//! The directory holds argon2id hashes; verification costs tens of
//! milliseconds of CPU on purpose, so callers run it on a blocking thread.

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use consensus::address::MailAddress;
use consensus::state::Directory;

use crate::smtp::Reply;

fn invalid() -> Reply {
    Reply::new(535, "5.7.8", "Authentication credentials invalid")
}

/// The refusal of a frozen account (RFC 4954 §6 "user account disabled"):
/// said only after the right password, so it tells a stranger nothing.
pub fn frozen() -> Reply {
    Reply::new(525, "5.7.13", "Account frozen: it may not send or log in; ask your administrator")
}

/// The user's canonical address when the password is right and the account
/// enabled and not frozen; for a wrong user, password or a disabled account
/// the same refusal, so a client cannot tell which part was wrong.
pub fn verify_login(directory: &Directory, username: &str, password: &str) -> Result<String, Reply> {
    let key = MailAddress::parse(username).map_err(|_| invalid())?.key();
    let user = directory.users.get(&key).ok_or_else(invalid)?;
    let hash = PasswordHash::new(&user.password_hash).map_err(|_| invalid())?;
    argon2::Argon2::default().verify_password(password.as_bytes(), &hash).map_err(|_| invalid())?;
    if !user.enabled {
        return Err(invalid());
    }
    if user.frozen {
        tracing::warn!(user = %user.address, "login refused: account frozen");
        return Err(frozen());
    }
    Ok(user.address.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    use consensus::command::Command;
    use consensus::state::ClusterState;

    #[test]
    fn logins() {
        let hash = argon2::Argon2::default()
            .hash_password(b"right password", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        let mut s = ClusterState::default();
        s.apply(&Command::AddDomain { name: "example.com".into() }, 0).unwrap();
        for u in ["alice@example.com", "bob@example.com"] {
            s.apply(
                &Command::AddUser { address: u.into(), display_name: String::new(), password_hash: hash.clone() },
                0,
            )
            .unwrap();
        }
        s.apply(&Command::SetUserEnabled { address: "bob@example.com".into(), enabled: false }, 0).unwrap();
        s.apply(
            &Command::AddUser {
                address: "carol@example.com".into(),
                display_name: String::new(),
                password_hash: hash.clone(),
            },
            0,
        )
        .unwrap();
        s.apply(&Command::SetUserFrozen { address: "carol@example.com".into(), frozen: true }, 0).unwrap();
        let d = &s.directory;
        assert_eq!(verify_login(d, "Alice@Example.com", "right password"), Ok("alice@example.com".into()));
        assert_eq!(verify_login(d, "alice@example.com", "wrong").unwrap_err().code, 535);
        assert_eq!(verify_login(d, "nobody@example.com", "right password").unwrap_err().code, 535);
        assert_eq!(verify_login(d, "bob@example.com", "right password").unwrap_err().code, 535);
        assert_eq!(verify_login(d, "not an address", "x").unwrap_err().code, 535);
        assert_eq!(verify_login(d, "carol@example.com", "right password"), Err(frozen()));
        assert_eq!(verify_login(d, "carol@example.com", "wrong").unwrap_err().code, 535);
    }
}
