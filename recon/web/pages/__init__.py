"""One module per page of the console; each exports ``routes``."""
