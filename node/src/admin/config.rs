//! [`AdminSettings`]: the `admin` section validated before any port is bound (errors name the
//! field, exit 64), and the token file it points to, re-read on every protected request so a
//! rotated Secret takes effect without a restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mcpcluster_api::AdminConfig;
use parking_lot::Mutex;

use super::auth::{self, Policy, Sha256Digest};
use crate::config_error::ConfigError;

fn bad(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field,
        message: message.into(),
    }
}

/// What a token file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    /// The token itself (`admin.tokenFile`).
    Token,
    /// The token's SHA-256 in hex (`admin.tokenSha256File`).
    Sha256,
}

impl Holds {
    fn field(self) -> &'static str {
        match self {
            Holds::Token => "admin.tokenFile",
            Holds::Sha256 => "admin.tokenSha256File",
        }
    }
}

/// The digest a token file gives, or why it gives none.
fn read_digest(path: &std::path::Path, holds: Holds) -> Result<Sha256Digest, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let text = text.trim();
    match holds {
        Holds::Token => {
            if !auth::valid_token(text.as_bytes()) {
                return Err(format!(
                    "`{}` does not hold a usable token: {} to {} characters of A-Z a-z 0-9 \
                     - . _ ~ + / (optionally ending in =) are required",
                    path.display(),
                    auth::MIN_TOKEN_LEN,
                    auth::MAX_TOKEN_LEN
                ));
            }
            Ok(auth::digest(text.as_bytes()))
        }
        Holds::Sha256 => parse_hex(text).ok_or_else(|| {
            format!(
                "`{}` does not hold a SHA-256 in hex (64 characters 0-9 a-f)",
                path.display()
            )
        }),
    }
}

fn parse_hex(text: &str) -> Option<Sha256Digest> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// A token file and the last digest read from it.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    holds: Holds,
    last: Mutex<Sha256Digest>,
}

impl TokenFile {
    fn open(path: &str, holds: Holds) -> Result<Self, ConfigError> {
        let path = PathBuf::from(path);
        let first = read_digest(&path, holds).map_err(|m| bad(holds.field(), m))?;
        Ok(Self {
            path,
            holds,
            last: Mutex::new(first),
        })
    }

    /// The digest the file holds now. A file that became unreadable or invalid keeps the last
    /// good digest (a Secret being rewritten must not lock the operator out), with a warning.
    pub fn current(&self) -> Sha256Digest {
        match read_digest(&self.path, self.holds) {
            Ok(d) => {
                *self.last.lock() = d;
                d
            }
            Err(err) => {
                tracing::warn!(field = self.holds.field(), error = %err, "admin token file unusable; keeping the last one");
                *self.last.lock()
            }
        }
    }
}

/// The validated `admin` section.
#[derive(Debug, Clone, Default)]
pub struct AdminSettings {
    /// The token file, if one is configured.
    pub token: Option<Arc<TokenFile>>,
    /// `admin.insecureLocal` (only ever true on a loopback `adminListen`).
    pub insecure_local: bool,
}

impl AdminSettings {
    /// Checks `c` against the admin address it protects: the token file must be readable and
    /// valid now, and anonymous access is allowed on loopback only.
    pub fn validate(c: &AdminConfig, admin_listen: SocketAddr) -> Result<Self, ConfigError> {
        let token = match (c.token_file.as_str(), c.token_sha256_file.as_str()) {
            ("", "") => None,
            (file, "") => Some(TokenFile::open(file, Holds::Token)?),
            ("", file) => Some(TokenFile::open(file, Holds::Sha256)?),
            (_, _) => {
                return Err(bad(
                    "admin.tokenSha256File",
                    "set either admin.tokenFile or admin.tokenSha256File, not both",
                ));
            }
        };
        if c.insecure_local && !admin_listen.ip().is_loopback() {
            return Err(bad(
                "admin.insecureLocal",
                format!(
                    "anonymous admin requests are allowed only on a loopback adminListen \
                     (127.0.0.0/8 or ::1), not on `{admin_listen}`; configure \
                     admin.tokenFile (--admin-token-file) instead"
                ),
            ));
        }
        Ok(Self {
            token: token.map(Arc::new),
            insecure_local: c.insecure_local,
        })
    }

    /// The policy protected requests are checked against now.
    pub fn policy(&self) -> Policy {
        Policy {
            token: self.token.as_ref().map(|t| t.current()),
            anonymous: self.insecure_local,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("mcp-node-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    }

    fn loopback() -> SocketAddr {
        "127.0.0.1:9090".parse().expect("addr")
    }

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn nothing_configured_is_closed() {
        let s = AdminSettings::validate(&AdminConfig::default(), loopback()).expect("valid");
        assert_eq!(
            s.policy(),
            Policy {
                token: None,
                anonymous: false
            }
        );
    }

    #[test]
    fn a_token_file_and_a_digest_file_give_the_same_policy() {
        let plain = AdminConfig {
            token_file: temp("plain", &format!("{TOKEN}\n")),
            ..Default::default()
        };
        let hex: String = auth::digest(TOKEN.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let hashed = AdminConfig {
            token_sha256_file: temp("hashed", &hex),
            ..Default::default()
        };
        let a = AdminSettings::validate(&plain, loopback()).expect("valid");
        let b = AdminSettings::validate(&hashed, loopback()).expect("valid");
        assert_eq!(a.policy(), b.policy());
        assert_eq!(a.policy().token, Some(auth::digest(TOKEN.as_bytes())));
    }

    #[test]
    fn a_rotated_file_is_picked_up_and_a_broken_one_keeps_the_last() {
        let path = temp("rotated", TOKEN);
        let c = AdminConfig {
            token_file: path.clone(),
            ..Default::default()
        };
        let s = AdminSettings::validate(&c, loopback()).expect("valid");
        std::fs::write(&path, "another-token-0123456789").expect("rotate");
        assert_eq!(
            s.policy().token,
            Some(auth::digest(b"another-token-0123456789"))
        );
        std::fs::write(&path, "short").expect("break");
        assert_eq!(
            s.policy().token,
            Some(auth::digest(b"another-token-0123456789"))
        );
    }

    #[test]
    fn problems_name_the_field() {
        let cases = [
            (
                AdminConfig {
                    token_file: "/nonexistent/token".into(),
                    ..Default::default()
                },
                "admin.tokenFile",
                "cannot read",
            ),
            (
                AdminConfig {
                    token_file: temp("short", "tiny"),
                    ..Default::default()
                },
                "admin.tokenFile",
                "usable token",
            ),
            (
                AdminConfig {
                    token_sha256_file: temp("nothex", "zz"),
                    ..Default::default()
                },
                "admin.tokenSha256File",
                "SHA-256",
            ),
            (
                AdminConfig {
                    token_file: temp("both", TOKEN),
                    token_sha256_file: temp("both2", TOKEN),
                    insecure_local: false,
                },
                "admin.tokenSha256File",
                "not both",
            ),
        ];
        for (c, field, says) in cases {
            let err = AdminSettings::validate(&c, loopback()).expect_err(field);
            let text = err.to_string();
            assert!(
                text.contains(&format!("`{field}`")) && text.contains(says),
                "{text}"
            );
        }
    }

    #[test]
    fn insecure_local_only_on_loopback() {
        let c = AdminConfig {
            insecure_local: true,
            ..Default::default()
        };
        for ok in ["127.0.0.1:9090", "127.0.0.12:0", "[::1]:9090"] {
            let s = AdminSettings::validate(&c, ok.parse().expect("addr")).expect(ok);
            assert!(s.policy().anonymous, "{ok}");
        }
        for refused in ["0.0.0.0:9090", "10.0.0.5:9090", "[::]:9090"] {
            let err =
                AdminSettings::validate(&c, refused.parse().expect("addr")).expect_err(refused);
            assert!(err.to_string().contains("`admin.insecureLocal`"), "{err}");
        }
    }
}
