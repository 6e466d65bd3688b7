//! Kernel parameter blocks: the `#[repr(C)]` Pod structs that mirror a shader's
//! `struct Params` (its `var<uniform>` at binding 0), declared with [`uniform_params!`] so that
//! they also describe their layout (field names, offsets, sizes), which a test compares with the
//! shader's through naga (`gpu::check`).

/// One field of a parameter block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamsField {
    /// The field's name; names starting with `_` are padding.
    pub name: &'static str,
    /// Byte offset (`offset_of!`).
    pub offset: usize,
    /// Bytes (`size_of` of its type).
    pub size: usize,
    /// The Rust type as written (`u32`, `f32`, `[u32; 3]`).
    pub ty: &'static str,
}

/// The layout of a parameter block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamsLayout {
    /// The struct's path (`ddpm::ops::attention::Params`): unique per struct.
    pub name: &'static str,
    /// `size_of` the struct.
    pub size: usize,
    /// Its fields, in declaration order.
    pub fields: &'static [ParamsField],
}

/// A kernel's uniform parameter block (implemented by [`uniform_params!`]).
pub trait UniformParams: bytemuck::Pod {
    /// The struct's layout.
    const LAYOUT: ParamsLayout;
}

/// Declares a kernel parameter block: the struct as written, made `#[repr(C)]` and
/// `Clone, Copy, Pod, Zeroable`, with an inherent `const LAYOUT` describing its fields (what a
/// `KernelSpec`'s `params` points at) and an impl of [`UniformParams`].
///
/// ```ignore
/// uniform_params! {
///     /// Mirrors `Params` in `shaders/concat.wgsl`.
///     struct Params {
///         numel: u32,
///         a_len: u32,
///         b_len: u32,
///         _pad: u32,
///     }
/// }
/// ```
macro_rules! uniform_params {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fattr:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $( $(#[$fattr])* $fvis $field: $ty, )*
        }

        impl $name {
            /// This struct's field names, offsets and sizes (checked against the shader's
            /// `struct Params` by `gpu::check`).
            $vis const LAYOUT: $crate::gpu::ParamsLayout = $crate::gpu::ParamsLayout {
                name: concat!(module_path!(), "::", stringify!($name)),
                size: ::core::mem::size_of::<$name>(),
                fields: &[$(
                    $crate::gpu::ParamsField {
                        name: stringify!($field),
                        offset: ::core::mem::offset_of!($name, $field),
                        size: ::core::mem::size_of::<$ty>(),
                        ty: stringify!($ty),
                    }
                ),*],
            };
        }

        impl $crate::gpu::UniformParams for $name {
            const LAYOUT: $crate::gpu::ParamsLayout = $name::LAYOUT;
        }
    };
}
pub(crate) use uniform_params;

#[cfg(test)]
mod tests {
    uniform_params! {
        struct Example {
            a: u32,
            b: f32,
            _pad: [u32; 2],
        }
    }

    #[test]
    fn layout_lists_every_field() {
        let l = Example::LAYOUT;
        assert_eq!(l.size, 16);
        assert!(l.name.ends_with("::Example"), "{}", l.name);
        let fields: Vec<_> = l
            .fields
            .iter()
            .map(|f| (f.name, f.offset, f.size, f.ty))
            .collect();
        assert_eq!(
            fields,
            [
                ("a", 0, 4, "u32"),
                ("b", 4, 4, "f32"),
                ("_pad", 8, 8, "[u32; 2]")
            ]
        );
        let e = Example {
            a: 1,
            b: 2.0,
            _pad: [0; 2],
        };
        assert_eq!(bytemuck::bytes_of(&e).len(), 16);
    }
}
