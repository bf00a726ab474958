"""Where pixels come from: ArcticDEM tiles (STAC + COG)."""
