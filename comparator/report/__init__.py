"""Stage 5: views of a Report (terminal, JSON, HTML, JUnit); they import no compute module."""
