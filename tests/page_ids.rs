//! The page's element ids agree in their three places: `src/web/ids.rs` (the one list the page's
//! code uses), `index.html` (which declares them) and the end-to-end tests (which select them).
//! `src/web/` is wasm32-only, so its id list is compiled here as a plain module.

#[allow(dead_code)]
#[path = "../src/web/ids.rs"]
mod ids;

use std::collections::BTreeMap;
use std::path::Path;

/// Every `id="…"` of `html`, with its count.
fn declared_ids(html: &str) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    let mut rest = html;
    while let Some(at) = rest.find(" id=\"") {
        let tail = &rest[at + 5..];
        let end = tail.find('"').expect("closing quote of an id");
        *ids.entry(tail[..end].to_string()).or_insert(0) += 1;
        rest = &tail[end..];
    }
    ids
}

#[test]
fn every_id_is_declared_once_and_the_page_declares_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let html = std::fs::read_to_string(root.join("index.html")).unwrap();
    let declared = declared_ids(&html);
    for id in ids::ALL {
        assert_eq!(
            declared.get(*id),
            Some(&1),
            "id {id:?} (src/web/ids.rs) must be declared exactly once in index.html"
        );
    }
    let extra: Vec<&String> = declared
        .keys()
        .filter(|id| !ids::ALL.contains(&id.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "index.html declares ids missing from src/web/ids.rs: {extra:?}"
    );
    let mut unique = ids::ALL.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids::ALL.len(), "an id is listed twice");
    assert_eq!(ids::VIEW_T, "view-t");
}

#[test]
fn the_e2e_tests_select_only_listed_ids() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("web/e2e")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "mjs") {
            continue;
        }
        let js = std::fs::read_to_string(&path).unwrap();
        // `'#some-id` selectors and getElementById('some-id').
        for (marker, skip) in [("'#", 2), ("getElementById('", 16)] {
            let mut rest = js.as_str();
            while let Some(at) = rest.find(marker) {
                let tail = &rest[at + skip..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .unwrap_or(tail.len());
                let id = &tail[..end];
                if !id.is_empty() {
                    assert!(
                        ids::ALL.contains(&id),
                        "{} selects #{id}, which src/web/ids.rs does not list",
                        path.display()
                    );
                    checked += 1;
                }
                rest = &tail[end..];
            }
        }
    }
    assert!(checked > 50, "only {checked} id selectors found in web/e2e");
}
