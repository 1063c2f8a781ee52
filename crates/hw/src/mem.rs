//! Placeholder: the mem model lands here.
