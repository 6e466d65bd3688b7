//! TODO(helper): reference for `shaders/conv2d.wgsl`.
