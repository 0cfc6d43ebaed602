"""A procedural generator of a small synthetic instance of every data layout, so demos and tests need no download.

Each identity is a parameter vector (skin, face shape, hair, eyes, brows, nose, mouth, glasses, beard, moles); each
photo adds variation (expression, yaw-like asymmetry, landmark jitter, lighting, blur, noise, JPEG). Heads are laid
out in canonical coordinates: a CANVAS x CANVAS frame whose 5 landmarks sit near `template(224)` shifted by MARGIN.
A head is drawn at some scale of that frame; recognition crops are cut from it with `align_face` at its true
landmarks, scene photos paste it with a similarity warp and a soft elliptical mask onto procedural backgrounds.
Landmarks are (left eye, right eye, nose tip, left mouth corner, right mouth corner) as seen in the image, in pixel
coordinates whose integers are pixel centres (as cv2 uses them).

Modules, each importing only those before it: `raster` (anti-aliased drawing), `identity` (people and photo
variation), `head` (the canonical frame and one drawn head), `scene` (backgrounds, aligned crops, scene photos),
`write` (the example set's people and files: make_example_data).
"""

from facekit.data.synthetic.identity import Identity, Variation, sample_identity, sample_variation
from facekit.data.synthetic.scene import canonical_crop
from facekit.data.synthetic.write import ExampleSummary, example_identities, make_example_data

__all__ = [
    "ExampleSummary",
    "Identity",
    "Variation",
    "canonical_crop",
    "example_identities",
    "make_example_data",
    "sample_identity",
    "sample_variation",
]
