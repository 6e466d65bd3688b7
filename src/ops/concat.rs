//! TODO(helper): `shaders/concat.wgsl` dispatch.
