"""English words the seed builds product names and descriptions from (shipped, so seeding needs no download).

Description words are drawn with Zipf-like weights (the first words most often), so a seeded catalog has
common words (in a fifth of the products), rare ones (in a few hundredths of a percent) and everything between,
as real text does: the queries of ``q`` meet both kinds at every size.
"""

from __future__ import annotations

from typing import Final


def _words(text: str) -> list[str]:
    return text.split()


ADJECTIVES: Final = _words("""
ancient bold bright classic compact cosy crisp curved deluxe durable elegant essential everyday fine folding gentle
golden grand handy heavy hidden honest humble lightweight little lovely lucky marvellous mighty modern natural neat
noble old original perfect plain polished practical premium pretty quiet rapid refined robust royal rugged rustic
serene sharp simple sleek small smart smooth snug solid sparkling splendid steady sturdy subtle sunny supreme swift
tidy timeless tiny trusty urban vintage warm wild wise witty wonderful""")

MATERIALS: Final = _words("""
aluminium bamboo brass bronze canvas cedar ceramic chrome concrete copper cork cotton denim felt glass granite hemp
iron jute leather linen maple marble oak paper pine plastic porcelain rubber silk silver slate steel stone suede teak
tin velvet walnut wicker wool""")

NOUNS: Final = _words("""
apron backpack basket bench blanket bottle bowl box bracelet brush bucket cabinet candle carafe chair clock coaster
cup cushion desk dish drawer easel fan flask frame glove hammer hat helmet jar jug kettle knife ladder lamp lantern
mat mirror mug napkin notebook pan pen pillow pitcher planter plate pot rack rug satchel saucer scarf shelf shovel
sofa spoon stool table teapot tray trowel umbrella vase wallet watch whistle""")

DEPARTMENTS: Final = _words("""
Kitchen Garden Office Outdoor Bathroom Bedroom Lighting Storage Travel Tools Textiles Tableware Decor Workshop
Camping Nursery Study Hallway Patio Pantry""")

#: Most common first: the weights fall with the rank.
DESCRIPTION: Final = _words("""
made design quality comfortable perfect home daily use easy clean gift finish colour size durable handmade light
strong soft feel natural classic style modern room space friends family work weekend kitchen garden office travel
weather season morning evening coffee tea dinner breakfast picnic holiday craft detail texture shape edge corner
handle base lid surface grip balance weight pattern stripe dots flowers leaves waves stars hearts birds forest river
mountain ocean island desert meadow valley harbour village city street market bakery library museum theatre studio
workshop garage attic cellar porch balcony terrace courtyard greenhouse orchard vineyard cottage cabin lodge manor
castle tower bridge lighthouse windmill station airport journey adventure story memory dream promise secret surprise
treasure wonder harmony rhythm melody silence laughter sunshine rain snow frost mist storm breeze thunder rainbow
sunrise sunset twilight midnight autumn winter spring summer january february march april june july august
september october november december elegant sturdy delicate generous careful patient honest clever curious gentle
brave calm cheerful graceful humble lively loyal proud quiet tender warm wise playful serene vivid golden silver
crimson scarlet amber emerald sapphire ivory ebony indigo violet turquoise coral olive mustard charcoal cream
pearl copper bronze maple cedar birch willow juniper lavender rosemary thyme basil mint saffron cinnamon vanilla
ginger honey lemon orange cherry plum apricot fig walnut almond hazelnut chestnut pepper cocoa caramel toffee
biscuit muffin crumpet scone pudding jam marmalade cheese butter bread pasta rice soup stew salad sauce spice
salt sugar flour yeast oven stove fridge sink tap towel soap sponge bucket broom mop duster hook peg nail screw
bolt hinge spring wheel axle gear lever pulley rope chain wire cable plug socket switch bulb battery magnet compass
map globe atlas telescope microscope camera lens film album diary journal letter envelope stamp parcel ribbon bow
button zipper buckle thread needle yarn knitting sewing quilt embroidery lace tassel fringe pleat hem collar sleeve
pocket cuff heel sole lace-up canvas parasol hammock lantern bonfire marshmallow tent compass kayak canoe paddle oar
sail anchor mast rudder keel hull dock pier jetty buoy seagull pelican heron swan duck goose owl hawk falcon eagle
sparrow robin wren finch thrush nightingale lark raven magpie badger otter beaver squirrel hedgehog rabbit hare fox
deer moose bison buffalo camel llama alpaca zebra giraffe elephant rhinoceros hippopotamus crocodile tortoise
lizard chameleon iguana salamander newt frog toad butterfly moth beetle ladybird dragonfly grasshopper cricket
firefly glowworm caterpillar cocoon chrysalis acorn pinecone seashell pebble driftwood fossil amethyst obsidian
quartz jasper onyx agate topaz garnet opal tourmaline peridot zircon""")
