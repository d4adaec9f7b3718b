"""Rendering results for people: terminal tables now, HTML and JSON reports later."""
