//! Queries of the registry area.
