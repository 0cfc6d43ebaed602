from facekit.cli import main

main(prog_name="facekit")
