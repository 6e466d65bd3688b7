//! TODO(helper): `shaders/attention.wgsl` dispatch.
