//! Placeholder: the cache model lands here.
