"""runtime: the namespace + overlayfs sandbox. Standard library only; never imports builder."""
