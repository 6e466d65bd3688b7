//! Every WGSL file in `shaders/` parses and validates with naga.
//!
//! A kernel that uses helper files declares them in a header line `// requires: a.wgsl, b.wgsl`
//! (the Rust side prepends them with `concat!(include_str!(..), ..)`); the test validates the
//! kernel with those files prepended, in the listed order. Helpers are also validated alone,
//! except fragments (header `// fragment: …`), which only make sense completed by the files
//! that require them. A header `// features: subgroup` validates with naga's subgroup
//! capabilities (the device feature the kernel needs).

use std::path::Path;

use ddpm::testing::{wgsl_header, wgsl_with_requires};

/// The helper files a shader's `// requires:` header lines name.
fn requires(source: &str) -> Vec<String> {
    wgsl_header(source, "requires:")
}

#[test]
fn all_shaders_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        count += 1;
        let own = std::fs::read_to_string(&path).unwrap();
        if !wgsl_header(&own, "fragment:").is_empty() {
            continue;
        }
        let mut caps = naga::valid::Capabilities::empty();
        for feature in wgsl_header(&own, "features:") {
            match feature.as_str() {
                "subgroup" => caps |= naga::valid::Capabilities::SUBGROUP,
                other => failures.push(format!("{}: unknown feature {other}", path.display())),
            }
        }
        let source = match wgsl_with_requires(&dir, &own) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let module = match naga::front::wgsl::parse_str(&source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: {}", path.display(), e.emit_to_string(&source)));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        if caps.contains(naga::valid::Capabilities::SUBGROUP) {
            validator.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
            validator.subgroup_operations(naga::valid::SubgroupOperationSet::all());
        }
        if let Err(e) = validator.validate(&module) {
            failures.push(format!("{}: {}", path.display(), e.emit_to_string(&source)));
        }
    }
    assert!(count > 0, "no shaders found in {}", dir.display());
    assert!(
        failures.is_empty(),
        "invalid WGSL:\n{}",
        failures.join("\n")
    );
}

#[test]
fn requires_header_is_parsed() {
    let src = "// requires: rng.wgsl, other.wgsl\n// note\nfn f() {}\n// requires: late.wgsl\n";
    assert_eq!(requires(src), vec!["rng.wgsl", "other.wgsl"]);
}
