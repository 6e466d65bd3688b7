//! TODO(helper): reference for `shaders/linear.wgsl`.
