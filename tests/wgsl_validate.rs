//! Every WGSL file in `shaders/` parses and validates with naga.
//!
//! A kernel that uses helper files declares them in a header line `// requires: a.wgsl, b.wgsl`
//! (the Rust side prepends them with `concat!(include_str!(..), ..)`); the test validates the
//! kernel with those files prepended, in the listed order. Helpers are also validated alone,
//! except fragments (header `// fragment: …`), which only make sense completed by the files
//! that require them. A header `// features: subgroup` validates with naga's subgroup
//! capabilities (the device feature the kernel needs), `// features: f16-in-f32` with
//! `SHADER_FLOAT16_IN_FLOAT32` (`unpack2x16float`; wgpu's `SHADER_F16_IN_F32` downlevel flag);
//! a fragment's features apply to every composition that includes it. A fragment with a header
//! `// replaces: other.wgsl` is an alternative to that helper: every kernel requiring `other.wgsl`
//! is validated a second time with the fragment in its place (the conv2d kernels with f16
//! weights).

use std::path::Path;

use ddpm::testing::{wgsl_compositions, wgsl_header};

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
        let sources = match wgsl_compositions(&dir, &own) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        for (i, source) in sources.iter().enumerate() {
            let what = format!("{} (composition {i})", path.display());
            // The kernel's features and those of the fragments composed into it (whose headers
            // stand at the start of their part of the source).
            let mut caps = naga::valid::Capabilities::empty();
            let headers = source
                .lines()
                .filter_map(|l| l.trim_start().strip_prefix("// features:"));
            for feature in headers.flat_map(|l| l.split(',')).map(str::trim) {
                match feature {
                    "subgroup" => caps |= naga::valid::Capabilities::SUBGROUP,
                    "f16-in-f32" => caps |= naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
                    other => failures.push(format!("{what}: unknown feature {other}")),
                }
            }
            let module = match naga::front::wgsl::parse_str(source) {
                Ok(m) => m,
                Err(e) => {
                    failures.push(format!("{what}: {}", e.emit_to_string(source)));
                    continue;
                }
            };
            let mut validator =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
            if caps.contains(naga::valid::Capabilities::SUBGROUP) {
                validator.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
                validator.subgroup_operations(naga::valid::SubgroupOperationSet::all());
            }
            if let Err(e) = validator.validate(&module) {
                failures.push(format!("{what}: {}", e.emit_to_string(source)));
            }
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
