//! Connection URLs in messages: show where, never the password.

/// `postgres://user:secret@db:5432/jobs` → `postgres://user:***@db:5432/jobs`. Anything that does
/// not parse as `scheme://[userinfo@]rest` is returned with everything up to the last `@` masked.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        };
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// The `host:port` part of a URL, for "cannot reach X" messages.
pub fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_hosts_kept() {
        assert_eq!(
            redact_url("postgresql://app:s3cr3t@db.internal:5432/jobs?sslmode=require"),
            "postgresql://app:***@db.internal:5432/jobs?sslmode=require"
        );
        assert_eq!(
            redact_url("redis://:pw@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact_url("postgres://user@db/x"), "postgres://user@db/x");
        assert!(!redact_url("weird:secret@host").contains("secret"));
        assert_eq!(
            url_host("postgresql://app:s3cr3t@db.internal:5432/jobs"),
            "db.internal:5432"
        );
        assert_eq!(url_host("redis://127.0.0.1:6379/0"), "127.0.0.1:6379");
    }
}
