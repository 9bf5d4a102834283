"""OAuth provider plugins (native services). None ship yet: the headrace_oauth_providers hook comes with them."""
