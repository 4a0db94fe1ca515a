//! Matching URIs against RFC 6570 level-1 templates (`test://items/{id}/data`), which is what
//! resource templates use in practice.

/// Matches `uri` against `template`; returns the variable bindings in order of appearance.
pub fn match_template(template: &str, uri: &str) -> Option<Vec<(String, String)>> {
    let mut vars = Vec::new();
    let mut rest = uri;
    let mut tpl = template;
    while !tpl.is_empty() {
        match tpl.find('{') {
            None => return (rest == tpl).then_some(vars),
            Some(open) => {
                let literal = &tpl[..open];
                rest = rest.strip_prefix(literal)?;
                let close = tpl[open..].find('}')? + open;
                let name = &tpl[open + 1..close];
                tpl = &tpl[close + 1..];
                // A variable extends to the next literal character of the template (or the end).
                let value_end = match tpl.chars().next() {
                    None => rest.len(),
                    Some(next) => rest.find(next)?,
                };
                let value = &rest[..value_end];
                if value.is_empty() {
                    return None;
                }
                vars.push((name.to_string(), value.to_string()));
                rest = &rest[value_end..];
            }
        }
    }
    rest.is_empty().then_some(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_and_binds() {
        let b =
            match_template("test://template/{id}/data", "test://template/42/data").expect("match");
        assert_eq!(b, vec![("id".to_string(), "42".to_string())]);
        assert!(match_template("test://template/{id}/data", "test://template//data").is_none());
        assert!(match_template("test://template/{id}/data", "test://other/42/data").is_none());
        let b = match_template("x://{a}/{b}", "x://1/2").expect("match");
        assert_eq!(b.len(), 2);
        assert!(match_template("x://fixed", "x://fixed").is_some());
    }
}
