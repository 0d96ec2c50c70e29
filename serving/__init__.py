"""HTTP API and web page (built in the serving issue); uses engine.search.SearchSession."""
