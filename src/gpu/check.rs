//! The test that every kernel's Rust side agrees with its WGSL, through naga (no device needed).
//!
//! Each op module lists its kernels in a `#[cfg(test)] fn kernels()` ([`KernelCheck`]s, gathered
//! by `ops::all_kernels`), with the Rust constants its shader must repeat. For every kernel the
//! test parses the full `source`, finds the `@compute` entry point and checks:
//! - the uniform struct at `@binding(0)` against [`KernelSpec::params`]: every field not named
//!   `_…` (padding) has the same name, offset, size and scalar type on both sides, and the total
//!   sizes agree;
//! - the bindings the entry point uses against [`KernelSpec::bindings`]: `@group(0)`, an index in
//!   the list, `var<uniform>` for [`Access::Uniform`], `var<storage, read>` for [`Access::Read`],
//!   `var<storage, read_write>` for [`Access::ReadWrite`]; a listed binding the entry point does
//!   not use must still be declared in the module with that access;
//! - the declared twins: `@workgroup_size`, shader `const`s, bytes of workgroup memory.
//!
//! So that no kernel escapes, it also checks that every `const X: KernelSpec` in `src/` is
//! registered, that every `@compute` entry point of every shader in `shaders/` (with its
//! `// requires:` files prepended, and again with each `// replaces:` fragment in place of the
//! file it replaces) is some registered kernel's, that every kernel's source is such a
//! composition, and that kernels sharing a pipeline-cache key (name, entry) are the same.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use naga::proc::Layouter;
use naga::valid::{Capabilities, ModuleInfo, ShaderStages, SubgroupOperationSet, ValidationFlags};
use naga::{AddressSpace, Expression, Literal, Module, ScalarKind, StorageAccess, TypeInner};

use super::{Access, KernelSpec, ParamsLayout};
use crate::testing::{wgsl_compositions, wgsl_header};

/// One registered kernel and the Rust constants its shader must agree with.
pub(crate) struct KernelCheck {
    /// The Rust file declaring it (`file!()`).
    pub file: &'static str,
    /// How that file names it (the `const`, or an expression such as `REG.k3s1`).
    pub rust_name: String,
    pub spec: &'static KernelSpec,
    /// The entry point's `@workgroup_size`, where Rust computes workgroup counts from it.
    pub workgroup_size: Option<[u64; 3]>,
    /// Shader `const`s (name, value) that Rust constants repeat.
    pub shader_consts: Vec<(&'static str, u64)>,
    /// Bytes of workgroup memory the entry point uses, where Rust checks a device limit with it.
    pub workgroup_bytes: Option<u64>,
}

/// `v` as u64 (the twins are usize or u32 on the Rust side).
fn as_u64<T: TryInto<u64>>(v: T) -> u64 {
    v.try_into().ok().expect("a kernel constant fits u64")
}

impl KernelCheck {
    pub(crate) fn new(
        file: &'static str,
        rust_name: impl Into<String>,
        spec: &'static KernelSpec,
    ) -> Self {
        KernelCheck {
            file,
            rust_name: rust_name.into(),
            spec,
            workgroup_size: None,
            shader_consts: Vec::new(),
            workgroup_bytes: None,
        }
    }

    /// The entry point's `@workgroup_size` must be `dims` (missing trailing dimensions are 1).
    pub(crate) fn workgroup_size<T: TryInto<u64>, const N: usize>(mut self, dims: [T; N]) -> Self {
        assert!(
            (1..=3).contains(&N),
            "workgroup_size takes 1 to 3 dimensions"
        );
        let mut size = [1; 3];
        for (s, d) in size.iter_mut().zip(dims) {
            *s = as_u64(d);
        }
        self.workgroup_size = Some(size);
        self
    }

    /// The shader's `const name` must equal `value`.
    pub(crate) fn shader_const<T: TryInto<u64>>(mut self, name: &'static str, value: T) -> Self {
        self.shader_consts.push((name, as_u64(value)));
        self
    }

    /// The entry point's `var<workgroup>` variables must take `bytes` in all.
    pub(crate) fn workgroup_bytes<T: TryInto<u64>>(mut self, bytes: T) -> Self {
        self.workgroup_bytes = Some(as_u64(bytes));
        self
    }

    /// How messages name this kernel.
    fn label(&self) -> String {
        format!(
            "kernel {}::{} ({} in {})",
            self.spec.name, self.spec.entry, self.rust_name, self.file
        )
    }
}

/// `KernelCheck::new(file!(), "SPEC", &SPEC)`: registers the kernel `const SPEC` of this file.
macro_rules! kernel_check {
    ($spec:ident) => {
        $crate::gpu::KernelCheck::new(file!(), stringify!($spec), &$spec)
    };
}
pub(crate) use kernel_check;

/// What [`check`] looked at.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub kernels: usize,
    pub params_structs: usize,
    pub sources: usize,
    pub bindings: usize,
    pub fields: usize,
    pub twins: usize,
    /// `const …: KernelSpec` items found in `src/`.
    pub kernel_consts: usize,
    /// Compute entry points found in `shaders/`.
    pub entry_points: usize,
}

/// A parsed and validated source.
struct Parsed {
    module: Module,
    info: ModuleInfo,
    layouter: Layouter,
}

fn parse(source: &str) -> Result<Parsed, String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let info = validator()
        .validate(&module)
        .map_err(|e| e.emit_to_string(source))?;
    let mut layouter = Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| format!("layout: {e}"))?;
    Ok(Parsed {
        module,
        info,
        layouter,
    })
}

/// A naga validator with every capability (validating the shaders strictly, per device
/// feature, is `tests/wgsl_validate.rs`'s job; here they only need to parse and be analysed).
fn validator() -> naga::valid::Validator {
    let mut v = naga::valid::Validator::new(ValidationFlags::all(), Capabilities::all());
    v.subgroup_stages(ShaderStages::COMPUTE);
    v.subgroup_operations(SubgroupOperationSet::all());
    v
}

/// A WGSL type as messages show it (`u32`, `vec4<f32>`, the struct's name…).
fn wgsl_type(module: &Module, ty: naga::Handle<naga::Type>) -> String {
    let t = &module.types[ty];
    match &t.inner {
        TypeInner::Scalar(s) => scalar_name(*s),
        TypeInner::Vector { size, scalar } => {
            format!("vec{}<{}>", *size as u8, scalar_name(*scalar))
        }
        _ => t.name.clone().unwrap_or_else(|| format!("{:?}", t.inner)),
    }
}

fn scalar_name(s: naga::Scalar) -> String {
    let k = match s.kind {
        ScalarKind::Uint => "u",
        ScalarKind::Sint => "i",
        ScalarKind::Float => "f",
        ScalarKind::Bool => return "bool".into(),
        ScalarKind::AbstractInt => return "abstract-int".into(),
        ScalarKind::AbstractFloat => return "abstract-float".into(),
    };
    format!("{k}{}", s.width as u32 * 8)
}

fn access_of(space: AddressSpace) -> Option<Access> {
    match space {
        AddressSpace::Uniform => Some(Access::Uniform),
        AddressSpace::Storage { access } if access == StorageAccess::LOAD => Some(Access::Read),
        AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => {
            Some(Access::ReadWrite)
        }
        _ => None,
    }
}

fn space_name(space: AddressSpace) -> String {
    match space {
        AddressSpace::Uniform => "var<uniform>".into(),
        AddressSpace::Storage { access } if access == StorageAccess::LOAD => {
            "var<storage, read>".into()
        }
        AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => {
            "var<storage, read_write>".into()
        }
        other => format!("{other:?}"),
    }
}

/// Compares the Rust parameter block with the WGSL struct `ty`; pushes a message per mismatch.
fn check_params(
    label: &str,
    rust: &ParamsLayout,
    parsed: &Parsed,
    ty: naga::Handle<naga::Type>,
    failures: &mut Vec<String>,
) -> usize {
    let module = &parsed.module;
    let wgsl_name = module.types[ty].name.clone().unwrap_or_default();
    let TypeInner::Struct { members, span } = &module.types[ty].inner else {
        failures.push(format!(
            "{label}: the uniform at @binding(0) is a {}, not a struct like {}",
            wgsl_type(module, ty),
            rust.name
        ));
        return 0;
    };
    let pad = |name: &str| name.starts_with('_');
    let mut compared = 0;
    for m in members {
        let name = m.name.as_deref().unwrap_or("");
        if pad(name) {
            continue;
        }
        let size = parsed.layouter[m.ty].size as usize;
        let ty_name = wgsl_type(module, m.ty);
        let Some(f) = rust.fields.iter().find(|f| f.name == name) else {
            failures.push(format!(
                "{label}: WGSL {wgsl_name}.{name} ({ty_name} at offset {}) has no field `{name}` \
                 in Rust {}",
                m.offset, rust.name
            ));
            continue;
        };
        compared += 1;
        if f.offset != m.offset as usize {
            failures.push(format!(
                "{label}: field `{name}`: offset {} in Rust {} but {} in WGSL {wgsl_name}",
                f.offset, rust.name, m.offset
            ));
        }
        if f.size != size {
            failures.push(format!(
                "{label}: field `{name}`: {} bytes in Rust {} ({}) but {size} in WGSL \
                 {wgsl_name} ({ty_name})",
                f.size, rust.name, f.ty
            ));
        }
        let scalars = ["u32", "i32", "f32"];
        if scalars.contains(&f.ty) && scalars.contains(&ty_name.as_str()) && f.ty != ty_name {
            failures.push(format!(
                "{label}: field `{name}`: {} in Rust {} but {ty_name} in WGSL {wgsl_name}",
                f.ty, rust.name
            ));
        }
    }
    for f in rust.fields.iter().filter(|f| !pad(f.name)) {
        if !members.iter().any(|m| m.name.as_deref() == Some(f.name)) {
            let there = members
                .iter()
                .find(|m| m.offset as usize == f.offset)
                .and_then(|m| m.name.clone())
                .map(|n| format!(" (WGSL has `{n}` at offset {})", f.offset))
                .unwrap_or_default();
            failures.push(format!(
                "{label}: Rust {}.{} ({} at offset {}) has no member `{}` in WGSL {wgsl_name}{there}",
                rust.name, f.name, f.ty, f.offset, f.name
            ));
        }
    }
    if rust.size != *span as usize {
        failures.push(format!(
            "{label}: size_of Rust {} = {} bytes but WGSL {wgsl_name} spans {span} bytes \
             (uniform structs round up to 16 bytes: pad the Rust struct to match)",
            rust.name, rust.size
        ));
    }
    compared
}

/// The value of a shader `const` (after naga's constant evaluation).
fn const_value(module: &Module, name: &str) -> Result<u64, String> {
    let Some((_, c)) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))
    else {
        return Err(format!("there is no `const {name}` in the shader"));
    };
    match module.global_expressions[c.init] {
        Expression::Literal(Literal::U32(v)) => Ok(v as u64),
        Expression::Literal(Literal::I32(v)) if v >= 0 => Ok(v as u64),
        Expression::Literal(Literal::U64(v)) => Ok(v),
        Expression::Literal(Literal::I64(v) | Literal::AbstractInt(v)) if v >= 0 => Ok(v as u64),
        ref other => Err(format!(
            "`const {name}` is not a non-negative integer literal after evaluation: {other:?}"
        )),
    }
}

/// Checks one kernel against its parsed source.
fn check_kernel(k: &KernelCheck, parsed: &Parsed, failures: &mut Vec<String>, sum: &mut Summary) {
    let label = k.label();
    let spec = k.spec;
    let module = &parsed.module;
    let Some((ep_index, ep)) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, ep)| ep.name == spec.entry)
    else {
        failures.push(format!(
            "{label}: its source has no entry point `{}` (it has: {})",
            spec.entry,
            module
                .entry_points
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return;
    };
    if ep.stage != naga::ShaderStage::Compute {
        failures.push(format!("{label}: `{}` is not @compute", spec.entry));
    }
    let uses = parsed.info.get_entry_point(ep_index);

    // Bindings.
    let bound: Vec<_> = module
        .global_variables
        .iter()
        .filter_map(|(h, v)| v.binding.as_ref().map(|b| (h, v, b.group, b.binding)))
        .collect();
    for &(h, v, group, binding) in &bound {
        if uses[h].is_empty() {
            continue;
        }
        let name = v.name.as_deref().unwrap_or("?");
        if group != 0 {
            failures.push(format!(
                "{label}: uses `{name}` at @group({group}) @binding({binding}); every binding \
                 must be in @group(0)"
            ));
            continue;
        }
        let Some(&want) = spec.bindings.get(binding as usize) else {
            failures.push(format!(
                "{label}: the shader uses @binding({binding}) `{name}` ({}) but the KernelSpec \
                 lists only {} bindings",
                space_name(v.space),
                spec.bindings.len()
            ));
            continue;
        };
        if access_of(v.space) != Some(want) {
            failures.push(format!(
                "{label}: binding {binding}: Access::{want:?} in Rust but `{name}` is {} in WGSL",
                space_name(v.space)
            ));
        }
    }
    for (i, &want) in spec.bindings.iter().enumerate() {
        sum.bindings += 1;
        let at_i: Vec<_> = bound
            .iter()
            .filter(|b| b.2 == 0 && b.3 as usize == i)
            .collect();
        if at_i.iter().any(|b| !uses[b.0].is_empty()) {
            continue; // checked above
        }
        if at_i.is_empty() {
            failures.push(format!(
                "{label}: binding {i}: Access::{want:?} in Rust but the shader declares nothing \
                 at @group(0) @binding({i})"
            ));
        } else if !at_i.iter().any(|b| access_of(b.1.space) == Some(want)) {
            failures.push(format!(
                "{label}: binding {i} (unused by the entry point): Access::{want:?} in Rust but \
                 the shader declares {}",
                at_i.iter()
                    .map(|b| format!(
                        "`{}` as {}",
                        b.1.name.as_deref().unwrap_or("?"),
                        space_name(b.1.space)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }

    // The parameter block.
    if spec.bindings.first() != Some(&Access::Uniform) {
        failures.push(format!(
            "{label}: binding 0 must be Access::Uniform (the parameter block {})",
            spec.params.name
        ));
    } else {
        let uniform = bound
            .iter()
            .filter(|b| b.2 == 0 && b.3 == 0 && b.1.space == AddressSpace::Uniform)
            .max_by_key(|b| !uses[b.0].is_empty());
        if let Some(&(_, v, _, _)) = uniform {
            sum.fields += check_params(&label, spec.params, parsed, v.ty, failures);
        }
    }

    // Twins.
    if let Some(want) = k.workgroup_size {
        sum.twins += 1;
        let got = ep.workgroup_size.map(u64::from);
        if ep.workgroup_size_overrides.is_some() {
            failures.push(format!(
                "{label}: @workgroup_size uses an override; Rust expects {want:?}"
            ));
        } else if got != want {
            failures.push(format!(
                "{label}: @workgroup_size is {got:?} in WGSL but Rust computes with {want:?}"
            ));
        }
    }
    for &(name, want) in &k.shader_consts {
        sum.twins += 1;
        match const_value(module, name) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!(
                "{label}: const {name} = {got} in WGSL but {want} in Rust"
            )),
            Err(e) => failures.push(format!("{label}: {e} (Rust has {name} = {want})")),
        }
    }
    if let Some(want) = k.workgroup_bytes {
        sum.twins += 1;
        let got: u64 = module
            .global_variables
            .iter()
            .filter(|(h, v)| v.space == AddressSpace::WorkGroup && !uses[*h].is_empty())
            .map(|(_, v)| parsed.layouter[v.ty].size as u64)
            .sum();
        if got != want {
            failures.push(format!(
                "{label}: the entry point uses {got} bytes of workgroup memory in WGSL but Rust \
                 counts {want}"
            ));
        }
    }
}

/// Every `shaders/*.wgsl` that is not a fragment, with its `// requires:` files prepended, and
/// its other compositions (a `// replaces:` fragment in place of a required file, see
/// `testing::wgsl_compositions`): (file name, full source).
fn shader_sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("wgsl"))
        .collect();
    names.sort();
    for path in names {
        let own = std::fs::read_to_string(&path).unwrap();
        if !wgsl_header(&own, "fragment:").is_empty() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for source in wgsl_compositions(dir, &own).unwrap() {
            out.push((name.clone(), source));
        }
    }
    out
}

/// `(file relative to the crate, NAME)` of every `const NAME: KernelSpec` in the `.rs` files
/// under `dir` (`root` is the crate directory).
fn kernel_consts(root: &Path, dir: &Path, out: &mut BTreeSet<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            kernel_consts(root, &path, out);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&path).unwrap();
        for name in kernel_const_names(&text) {
            out.insert((rel.clone(), name));
        }
    }
}

/// The `NAME`s of `const NAME: KernelSpec =` items in `text`.
fn kernel_const_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("const ") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "const ".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `myconst `
        }
        let ident_len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (ident, tail) = rest.split_at(ident_len);
        let tail = tail.trim_start();
        let Some(tail) = tail.strip_prefix(':') else {
            continue;
        };
        let Some(tail) = tail.trim_start().strip_prefix("KernelSpec") else {
            continue;
        };
        if !ident.is_empty() && tail.trim_start().starts_with('=') {
            names.push(ident.to_string());
        }
    }
    names
}

/// Checks `kernels` (see the module docs); returns the failures and what was looked at.
pub(crate) fn check(kernels: &[KernelCheck]) -> (Vec<String>, Summary) {
    let mut failures = Vec::new();
    let mut sum = Summary::default();
    let mut parsed: HashMap<&'static str, Result<Parsed, String>> = HashMap::new();
    let mut params = BTreeSet::new();
    for k in kernels {
        sum.kernels += 1;
        params.insert(k.spec.params.name);
        match parsed
            .entry(k.spec.source)
            .or_insert_with(|| parse(k.spec.source))
        {
            Ok(p) => check_kernel(k, p, &mut failures, &mut sum),
            Err(e) => failures.push(format!("{}: its source does not parse: {e}", k.label())),
        }
    }
    sum.params_structs = params.len();
    sum.sources = parsed.len();

    // Kernels sharing the pipeline cache's key must be the same kernel.
    let mut by_key: HashMap<(&str, &str), &KernelCheck> = HashMap::new();
    for k in kernels {
        let key = (k.spec.name, k.spec.entry);
        if let Some(first) = by_key.get(&key) {
            let (a, b) = (first.spec, k.spec);
            if a.source != b.source || a.bindings != b.bindings || a.params != b.params {
                failures.push(format!(
                    "{} and {}: same (name, entry) = {key:?}, the pipeline cache's key, but \
                     different source, bindings or params",
                    first.label(),
                    k.label()
                ));
            }
        } else {
            by_key.insert(key, k);
        }
    }
    (failures, sum)
}

/// Checks that `kernels` is every kernel: every `const X: KernelSpec` under `src/` is registered,
/// every compute entry point of every shader (with its `// requires:` files) is a registered
/// kernel's, and every kernel's source is such a composition.
pub(crate) fn check_complete(kernels: &[KernelCheck], sum: &mut Summary) -> Vec<String> {
    let mut failures = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut consts = BTreeSet::new();
    kernel_consts(root, &root.join("src"), &mut consts);
    consts.retain(|(file, _)| file != "src/gpu/check.rs");
    sum.kernel_consts = consts.len();
    let registered: BTreeSet<(String, String)> = kernels
        .iter()
        .map(|k| (k.file.replace('\\', "/"), k.rust_name.clone()))
        .collect();
    for (file, name) in &consts {
        if !registered.contains(&(file.clone(), name.clone())) {
            failures.push(format!(
                "{file}: `const {name}: KernelSpec` is not registered (add \
                 `kernel_check!({name})` to that module's `kernels()`)"
            ));
        }
    }
    if consts.len() < 10 {
        failures.push(format!(
            "found only {} `const …: KernelSpec` items under src/: is the scan broken?",
            consts.len()
        ));
    }

    let shaders = shader_sources(&root.join("shaders"));
    for (file, source) in &shaders {
        let module = match naga::front::wgsl::parse_str(source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("shaders/{file}: {}", e.emit_to_string(source)));
                continue;
            }
        };
        for ep in module
            .entry_points
            .iter()
            .filter(|ep| ep.stage == naga::ShaderStage::Compute)
        {
            sum.entry_points += 1;
            if !kernels
                .iter()
                .any(|k| k.spec.entry == ep.name && k.spec.source == source.as_str())
            {
                failures.push(format!(
                    "shaders/{file}: entry point `{}` is no registered kernel's (a KernelSpec with \
                     this entry and the file's `// requires:` + the file as source, registered \
                     in its module's `kernels()`)",
                    ep.name
                ));
            }
        }
    }
    for k in kernels {
        if !shaders.iter().any(|(_, s)| s == k.spec.source) {
            failures.push(format!(
                "{}: its source is not a shader file with its `// requires:` files prepended in \
                 order",
                k.label()
            ));
        }
    }
    failures
}

/// Every registered kernel of the crate.
fn all_kernels() -> Vec<KernelCheck> {
    let mut kernels = crate::ops::all_kernels();
    #[cfg(not(target_arch = "wasm32"))]
    kernels.extend(crate::bench::kernels::kernels());
    kernels
}

#[test]
fn kernels_match_their_shaders() {
    let kernels = all_kernels();
    let (mut failures, mut sum) = check(&kernels);
    failures.extend(check_complete(&kernels, &mut sum));
    println!(
        "checked {} kernels ({} sources, {} Params structs; {} named fields, {} bindings and {} \
         constants/workgroup sizes compared); registry cross-checked against {} `const …: \
         KernelSpec` items in src/ and {} compute entry points in shaders/",
        sum.kernels,
        sum.sources,
        sum.params_structs,
        sum.fields,
        sum.bindings,
        sum.twins,
        sum.kernel_consts,
        sum.entry_points
    );
    assert!(
        failures.is_empty(),
        "{} mismatches between Rust and WGSL:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

mod tests {
    use super::*;
    use crate::gpu::uniform_params;

    uniform_params! {
        struct TestParams {
            n: u32,
            scale: f32,
            _pad: [u32; 2],
        }
    }

    const WGSL: &str = "
struct Params { n: u32, scale: f32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
const WG: u32 = 64u;
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if gid.x < p.n { out[gid.x] = a[gid.x] * f32(p.scale); }
}
";

    fn run(
        source: &'static str,
        bindings: &'static [Access],
        params: &'static ParamsLayout,
    ) -> Vec<String> {
        let spec: &'static KernelSpec = Box::leak(Box::new(KernelSpec {
            name: "test",
            source,
            entry: "main",
            bindings,
            params,
        }));
        let k = KernelCheck::new(file!(), "TEST", spec)
            .workgroup_size([64u32])
            .shader_const("WG", 64u32);
        check(&[k]).0
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    const RRW: &[Access] = &[Access::Uniform, Access::Read, Access::ReadWrite];

    #[test]
    fn matching_kernel_passes() {
        assert_eq!(run(WGSL, RRW, &TestParams::LAYOUT), Vec::<String>::new());
    }

    #[test]
    fn catches_field_order_type_and_size() {
        let swapped = leak(WGSL.replace("n: u32, scale: f32", "scale: f32, n: u32"));
        let f = run(swapped, RRW, &TestParams::LAYOUT);
        assert!(
            f.iter()
                .any(|m| m.contains("field `n`: offset 0 in Rust") && m.contains("but 4 in WGSL")),
            "{f:#?}"
        );
        let retyped = leak(WGSL.replace("scale: f32", "scale: u32"));
        let f = run(retyped, RRW, &TestParams::LAYOUT);
        assert!(
            f.iter().any(|m| m.contains("field `scale`: f32 in Rust")),
            "{f:#?}"
        );
        let short = leak(WGSL.replace(", _pad1: u32", ""));
        let f = run(short, RRW, &TestParams::LAYOUT);
        assert!(
            f.iter()
                .any(|m| m.contains("= 16 bytes but WGSL Params spans 12")),
            "{f:#?}"
        );
        let renamed = leak(WGSL.replace("scale", "gain"));
        let f = run(renamed, RRW, &TestParams::LAYOUT);
        assert!(f.iter().any(|m| m.contains("WGSL Params.gain")), "{f:#?}");
        assert!(
            f.iter()
                .any(|m| m.contains("TestParams.scale (f32 at offset 4) has no member")),
            "{f:#?}"
        );
    }

    #[test]
    fn catches_binding_mismatches() {
        let f = run(
            WGSL,
            &[Access::Uniform, Access::ReadWrite, Access::ReadWrite],
            &TestParams::LAYOUT,
        );
        assert!(
            f.iter().any(|m| m
                .contains("binding 1: Access::ReadWrite in Rust but `a` is var<storage, read>")),
            "{f:#?}"
        );
        let f = run(WGSL, &[Access::Uniform, Access::Read], &TestParams::LAYOUT);
        assert!(
            f.iter().any(|m| m.contains("uses @binding(2) `out`")),
            "{f:#?}"
        );
        let f = run(
            WGSL,
            &[
                Access::Uniform,
                Access::Read,
                Access::ReadWrite,
                Access::Read,
            ],
            &TestParams::LAYOUT,
        );
        assert!(
            f.iter()
                .any(|m| m.contains("declares nothing at @group(0) @binding(3)")),
            "{f:#?}"
        );
    }

    #[test]
    fn catches_constants_and_workgroup_size() {
        let f = run(leak(WGSL.replace("64u", "32u")), RRW, &TestParams::LAYOUT);
        assert!(
            f.iter()
                .any(|m| m.contains("const WG = 32 in WGSL but 64 in Rust")),
            "{f:#?}"
        );
        assert!(
            f.iter()
                .any(|m| m.contains("@workgroup_size is [32, 1, 1] in WGSL")),
            "{f:#?}"
        );
    }

    #[test]
    fn finds_kernel_consts() {
        let src = "const A: KernelSpec = x;\npub(crate) const B : KernelSpec=y;\nconst C: &[Access] = &[];\nconst fn d() -> KernelSpec {}\nmyconst E: KernelSpec = z;";
        assert_eq!(kernel_const_names(src), ["A", "B"]);
    }
}
