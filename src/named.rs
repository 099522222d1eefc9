//! `FromStr` + `Display` for the small closed sets chosen by name on the command line
//! (architectures, schemes, backends): each has `const ALL` and `fn name(self) -> &str`.

/// Implement `FromStr` (error lists the valid names) and `Display` from `ALL` and `name()`.
macro_rules! impl_named {
    ($ty:ty, $what:literal) => {
        impl std::str::FromStr for $ty {
            type Err = $crate::error::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$ty>::ALL
                    .into_iter()
                    .find(|v| v.name() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = <$ty>::ALL.iter().map(|v| v.name()).collect();
                        $crate::error::Error::Invalid(format!(
                            "unknown {} '{s}' (expected one of: {})",
                            $what,
                            names.join(", ")
                        ))
                    })
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub(crate) use impl_named;
