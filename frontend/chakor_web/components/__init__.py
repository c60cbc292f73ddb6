"""Page components, one module per page."""
