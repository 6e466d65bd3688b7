//! TODO(helper): `shaders/linear.wgsl` dispatch.
