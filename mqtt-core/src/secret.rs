//! `Debug` for structs that hold secrets (passwords, authentication data): such a field shows
//! whether it is set, never its value, so that printing a packet or options into a log cannot
//! leak a credential.

use std::fmt;

/// An optional secret as `Debug` shows it: `Some("<hidden>")` or `None`.
pub(crate) struct Hidden<'a, T>(pub(crate) &'a Option<T>);

impl<T> fmt::Debug for Hidden<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some(\"<hidden>\")"),
            None => f.write_str("None"),
        }
    }
}

/// Implements `Debug` for struct `$ty`: the fields listed first as their own `Debug` shows
/// them, those after `hidden` (each an `Option`) through [`Hidden`]. Every field must be
/// listed: the struct is destructured whole, so a field added later fails to compile here
/// until someone decides whether it is a secret.
macro_rules! debug_hiding_secrets {
    ($ty:ident { $($field:ident),* $(,)? } hidden { $($secret:ident),* $(,)? }) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                let Self { $($field,)* $($secret,)* } = self;
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), $field))*
                    $(.field(stringify!($secret), &$crate::secret::Hidden($secret)))*
                    .finish()
            }
        }
    };
}

pub(crate) use debug_hiding_secrets;
