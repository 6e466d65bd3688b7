//! TODO(helper): `shaders/conv2d.wgsl` dispatch.
