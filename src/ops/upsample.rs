//! TODO(helper): `shaders/upsample.wgsl` dispatch.
