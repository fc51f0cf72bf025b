//! A light PromQL syntax check at validation time: brackets balance and nest, strings and
//! backquoted raw strings close, the expression is not empty. It catches the typos a plan
//! editor makes (a lost `}` or quote) without a full parser; Prometheus itself rejects the rest
//! at run time with its own message (HTTP 400 `bad_data`), which the probe records.
//!
//! Why not the `promql-parser` crate: it would be the only user of a generated LR parser and
//! its build dependencies on every `cargo build`, for errors Prometheus already reports.

/// The first problem found, with its byte offset in `q`.
pub fn check(q: &str) -> Result<(), (usize, String)> {
    if q.trim().is_empty() {
        return Err((0, "the query is empty".into()));
    }
    let mut open: Vec<(usize, char)> = Vec::new();
    let mut chars = q.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut closed = false;
                while let Some((_, d)) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err((i, format!("the string opened here with {c} is not closed")));
                }
            }
            '#' => {
                // A comment runs to the end of the line.
                for (_, d) in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => open.push((i, c)),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match open.pop() {
                    Some((_, o)) if o == want => {}
                    Some((at, o)) => {
                        return Err((i, format!("`{c}` closes the `{o}` opened at offset {at}")))
                    }
                    None => return Err((i, format!("`{c}` closes nothing"))),
                }
            }
            _ => {}
        }
    }
    match open.pop() {
        Some((at, o)) => Err((at, format!("`{o}` is never closed"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn balanced_queries_pass() {
        for q in [
            r#"sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="tt", pod=~"ts-.*"}[1m]))"#,
            r#"up{job="a}b"} == 1"#,
            "label_replace(up, \"x\", \"$1\", \"job\", `(.*)`)",
            "sum(up) # a comment with ( in it",
        ] {
            assert_eq!(check(q), Ok(()), "{q}");
        }
    }

    #[test]
    fn typos_are_located() {
        assert_eq!(check("rate(up[5m]").unwrap_err().0, 4);
        assert_eq!(check("up{job=\"a}").unwrap_err().0, 7);
        assert!(check("sum(up))").unwrap_err().1.contains("closes nothing"));
        assert!(check("sum(up{a=\"b\")}")
            .unwrap_err()
            .1
            .contains("closes the `{`"));
        assert!(check("  ").is_err());
    }
}
