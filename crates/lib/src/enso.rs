//! Placeholder: the Ensō library lands here.
