//! Fuzz targets for spanbus's parsers of outside input; the properties are in [`checks`].

pub mod checks;
