//! Keeping secrets out of error messages: which config lines may hold one, and how such a
//! line and the parser's message about it are shown. A leaf.

/// Whether a config line may hold a secret: its key names a password, a secret, a token,
/// a credential or a key (`secret_access_key`), wherever on the line.
pub(super) fn holds_secret(line: &str) -> bool {
    let key = line.split('=').next().unwrap_or(line).to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "credential",
        "key",
        "heartbeat_url",
    ]
    .iter()
    .any(|w| key.contains(w))
}

/// `key = <redacted>`: the key stays (the user needs to know which line), the value goes.
pub(super) fn redact_line(line: &str) -> String {
    match line.split_once('=') {
        Some((k, _)) => format!("{} = <redacted>", k.trim()),
        None => "<redacted>".into(),
    }
}

/// A parser message with every `quoted` part replaced (it may quote the value).
pub(super) fn mask_quoted(msg: &str) -> String {
    let mut out = String::new();
    for (i, part) in msg.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { "`…`" } else { part });
    }
    out
}
