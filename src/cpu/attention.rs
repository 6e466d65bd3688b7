//! TODO(helper): reference for `shaders/attention.wgsl`.
