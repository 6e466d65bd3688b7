//! TODO(helper): reference for `shaders/group_norm.wgsl`.
