"""The monitor service: participants' load and errors from nginx's request log, and alerts."""
