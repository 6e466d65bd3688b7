//! TODO(helper): reference for `shaders/upsample.wgsl`.
