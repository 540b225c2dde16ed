//! Every metric regmirror exports, defined in one place.
