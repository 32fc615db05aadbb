//! Queries of the officers area.
