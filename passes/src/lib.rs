//! Graph-to-graph passes over the Kestrel IR.
