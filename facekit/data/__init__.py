"""Readers and writers of the data layouts: images, identity folders, label.txt, RecordIO, .lst, .bin pairs."""
