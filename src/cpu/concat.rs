//! TODO(helper): reference for `shaders/concat.wgsl`.
