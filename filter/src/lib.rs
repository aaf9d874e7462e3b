//! tokengate filter (to be written)
