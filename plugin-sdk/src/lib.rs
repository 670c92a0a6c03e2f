//! srediag plugin SDK (filled by the plugin issues).
