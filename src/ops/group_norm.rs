//! TODO(helper): `shaders/group_norm.wgsl` dispatch.
