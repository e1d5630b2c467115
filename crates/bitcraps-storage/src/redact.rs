//! The one redaction function: anything that may hold a secret (a database or Redis URL with
//! a password) goes through [`redact_url`] before it reaches an error message, a log line,
//! `Debug` output, statistics or a manifest. The CLI uses the same function for its own
//! messages.

/// `url` with its password replaced by `***`: the `user:password@` part of the authority and
/// `password=` / `sslpassword=` query parameters (libpq accepts both). Text that is not a URL
/// is returned as it is.
///
/// ```
/// use bitcraps_storage::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db/games"), "postgres://app:***@db/games");
/// assert_eq!(redact_url("redis://:s3cret@cache:6379"), "redis://:***@cache:6379");
/// assert_eq!(redact_url("postgres://db/games?password=s3cret"), "postgres://db/games?password=***");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let (head, rest) = url.split_at(scheme_end);
    // The authority ends at the first '/', '?' or '#'; a password may contain '@', so the
    // last '@' inside the authority ends the user info.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***{host}"),
                None => authority.to_owned(),
            }
        }
        None => authority.to_owned(),
    };
    format!("{head}{authority}{}", redact_query(tail))
}

/// `password=` and `sslpassword=` values of a query string, replaced.
fn redact_query(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_owned();
    };
    let (path, query) = tail.split_at(q + 1);
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _))
                if name.eq_ignore_ascii_case("password")
                    || name.eq_ignore_ascii_case("sslpassword") =>
            {
                format!("{name}=***")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{path}{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_survive() {
        for (url, want) in [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            (
                "postgres://h/db?sslmode=require&password=secret",
                "postgres://h/db?sslmode=require&password=***",
            ),
            ("rediss://:secret@h:6380/0", "rediss://:***@h:6380/0"),
            ("sqlite://./data/x.db", "sqlite://./data/x.db"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
            assert!(!redact_url(url).contains("secret"), "{url}");
        }
    }
}
