//! Pages of the node's merged lists when upstreams are configured: at most [`PAGE`] entries
//! each, the next page named by an opaque `nextCursor` (the offset of its first entry in the
//! merged list, `o<offset>`), so a client paging through a list crosses from the node's own
//! entries into each upstream's and from one upstream into the next.
//!
//! The merged list is built again for every page from the lists as last fetched: a list that
//! changed between two pages may make a client see an entry twice or miss one (it was told
//! with `list_changed` and lists again). A cursor valid on one node is valid on every node
//! (each holds the same configuration; their fetched lists may differ for a moment).

use serde_json::Value;

/// Most entries in one page.
pub const PAGE: usize = 500;

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor `{0}` (not one this server gave)")]
pub struct BadCursor(pub String);

/// The page of `items` that `cursor` names (the first without one) and the cursor of the
/// next page, if there is one. A cursor past the end (the list shrank) gives an empty last
/// page.
pub fn page(
    mut items: Vec<Value>,
    cursor: Option<&str>,
) -> Result<(Vec<Value>, Option<String>), BadCursor> {
    let start = match cursor {
        None => 0,
        Some(c) => c
            .strip_prefix('o')
            .filter(|n| !n.starts_with('+'))
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| BadCursor(c.chars().take(64).collect()))?,
    };
    if start >= items.len() {
        return Ok((Vec::new(), None));
    }
    let end = start.saturating_add(PAGE).min(items.len());
    let next = (end < items.len()).then(|| format!("o{end}"));
    items.truncate(end);
    Ok((items.split_off(start), next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pages_cover_the_list_once_and_bad_cursors_are_refused() {
        let items: Vec<Value> = (0..PAGE * 2 + 3).map(|i| json!(i)).collect();
        let mut got = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let (page, next) = page(items.clone(), cursor.as_deref()).expect("valid");
            assert!(page.len() <= PAGE);
            got.extend(page);
            pages += 1;
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!((got, pages), (items.clone(), 3));
        assert_eq!(page(items.clone(), Some("o99999")), Ok((Vec::new(), None)));
        for bad in [
            "",
            "o",
            "x1",
            "o-1",
            "o+1",
            "o1.5",
            "o99999999999999999999999",
        ] {
            assert_eq!(page(items.clone(), Some(bad)), Err(BadCursor(bad.into())));
        }
        assert_eq!(page(Vec::new(), None), Ok((Vec::new(), None)));
    }
}
