//! [`Headers`]: the configured headers of one upstream, their values plain or read from Secret
//! files (`valueFrom.secretKeyRef`: `<secretsDir>/<name>/<key>`, as the operator mounts them).
//!
//! Secret values are read when the node starts (a missing or unusable file exits 64 naming the
//! header) and again every [`RELOAD_EVERY`] ([`Headers::reload`], from the upstream's tasks),
//! so a rotated Secret reaches the requests without a restart once the kubelet has updated the
//! mounted file; a file that cannot be read then keeps the last good value (warned). Values are
//! marked sensitive and never logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use mcpcluster_api::{HeaderValue as Configured, UpstreamConfig};
use parking_lot::RwLock;

/// How often Secret-held values are read again.
pub const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// Largest Secret value read as a header (a header line past it is refused by most servers).
const MAX_VALUE: u64 = 16 * 1024;

/// A header whose value lives in a file.
#[derive(Debug)]
struct FromFile {
    /// `headers.<name>`, for messages.
    field: String,
    name: HeaderName,
    path: PathBuf,
}

/// One upstream's headers as sent now.
#[derive(Debug)]
pub struct Headers {
    current: RwLock<Arc<Vec<(HeaderName, HeaderValue)>>>,
    files: Vec<FromFile>,
}

impl Headers {
    /// The headers of a validated upstream entry, Secret values read from under
    /// `secrets_dir`: `Err((field, problem))`, `field` relative to the entry
    /// (`headers.Authorization`).
    pub fn new(config: &UpstreamConfig, secrets_dir: &Path) -> Result<Self, (String, String)> {
        let mut current = Vec::new();
        let mut files = Vec::new();
        for (k, v) in &config.headers {
            let field = format!("headers.{k}");
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| (field.clone(), format!("not a header name: {e}")))?;
            let value = match v {
                Configured::Plain(v) => HeaderValue::from_str(v)
                    .map_err(|e| (field.clone(), format!("not a header value: {e}")))?,
                Configured::Secret(r) => {
                    let path = secrets_dir.join(&r.name).join(&r.key);
                    let value = read_value(&path).map_err(|why| {
                        (
                            format!("{field}.valueFrom.secretKeyRef"),
                            format!(
                                "key `{}` of Secret `{}` ({}): {why}",
                                r.key,
                                r.name,
                                path.display()
                            ),
                        )
                    })?;
                    files.push(FromFile {
                        field: field.clone(),
                        name: name.clone(),
                        path,
                    });
                    value
                }
                Configured::Invalid { why, .. } => return Err((field, why.clone())),
            };
            current.push((name, value));
        }
        Ok(Self {
            current: RwLock::new(Arc::new(current)),
            files,
        })
    }

    /// The headers to send with a request.
    pub fn current(&self) -> Arc<Vec<(HeaderName, HeaderValue)>> {
        self.current.read().clone()
    }

    /// Whether any value comes from a Secret (then [`Headers::reload`] is worth running).
    pub fn has_secrets(&self) -> bool {
        !self.files.is_empty()
    }

    /// Reads the Secret values again; a changed one replaces the old (logged by header name
    /// only), one that cannot be read keeps the old (warned). Returns how many changed.
    pub fn reload(&self, upstream: &str) -> usize {
        if self.files.is_empty() {
            return 0;
        }
        let mut next = (*self.current()).clone();
        let mut changed = 0;
        for f in &self.files {
            match read_value(&f.path) {
                Ok(value) => {
                    if let Some(slot) = next.iter_mut().find(|(n, _)| *n == f.name)
                        && slot.1 != value
                    {
                        slot.1 = value;
                        changed += 1;
                        tracing::info!(upstream, header = %f.name, "upstream header value changed in its Secret");
                    }
                }
                Err(why) => {
                    tracing::warn!(upstream, field = %f.field, path = %f.path.display(), %why, "cannot read an upstream header's Secret again; keeping the last value");
                }
            }
        }
        if changed > 0 {
            *self.current.write() = Arc::new(next);
        }
        changed
    }
}

/// A header value from a file: its bytes without trailing line breaks (`kubectl create
/// secret --from-file` keeps a file's final newline), marked sensitive.
fn read_value(path: &Path) -> Result<HeaderValue, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_VALUE {
        return Err(format!("{len} bytes, more than {MAX_VALUE}"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    let mut value = HeaderValue::from_bytes(&bytes[..end]).map_err(|_| {
        "not a header value (a line break, NUL or another control character inside)".to_owned()
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpcluster_api::SecretKeyRef;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mcp-headers-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("creds")).expect("mkdir");
        d
    }

    fn config() -> UpstreamConfig {
        let mut u = UpstreamConfig::new("fs", "http://fs/mcp");
        u.headers.insert("X-Plain".into(), "p".into());
        u.headers.insert(
            "Authorization".into(),
            Configured::Secret(SecretKeyRef {
                name: "creds".into(),
                key: "token".into(),
            }),
        );
        u
    }

    #[test]
    fn secret_values_are_read_trimmed_and_reloaded() {
        let d = dir("reload");
        std::fs::write(d.join("creds/token"), "Bearer one\n").expect("write");
        let h = Headers::new(&config(), &d).expect("reads");
        assert!(h.has_secrets());
        let now = h.current();
        let auth = now.iter().find(|(n, _)| n == "authorization").expect("set");
        assert_eq!(auth.1, "Bearer one");
        assert!(auth.1.is_sensitive());
        assert_eq!(h.reload("fs"), 0);
        std::fs::write(d.join("creds/token"), "Bearer two").expect("write");
        assert_eq!(h.reload("fs"), 1);
        let now = h.current();
        assert_eq!(
            now.iter()
                .find(|(n, _)| n == "authorization")
                .expect("set")
                .1,
            "Bearer two"
        );
        // Gone: the last value stays.
        std::fs::remove_file(d.join("creds/token")).expect("rm");
        assert_eq!(h.reload("fs"), 0);
        assert_eq!(h.current().len(), 2);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_missing_or_bad_secret_names_the_header() {
        let d = dir("bad");
        let (field, why) = Headers::new(&config(), &d).expect_err("missing");
        assert_eq!(field, "headers.Authorization.valueFrom.secretKeyRef");
        assert!(why.contains("key `token` of Secret `creds`"), "{why}");
        std::fs::write(d.join("creds/token"), "a\nb").expect("write");
        let (_, why) = Headers::new(&config(), &d).expect_err("line break");
        assert!(
            why.contains("not a header value") && !why.contains("a\nb"),
            "{why}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
