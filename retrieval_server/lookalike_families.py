"""The templates, pools and real documents of the look-alike corpora (see
:mod:`retrieval_server.lookalikes`), and the questions asked about the real documents.

Each family is one kind of document written from one template. Its real documents are
fixed slot values; look-alikes draw every slot from the pools (other names, other
details), so they share topic and phrasing with the real ones. ``aspects`` name the slot
groups a by-content question describes: no look-alike may repeat a real document's values
for a whole aspect (else the question would have two right answers), but many share part
of one. Questions ``by_name`` name their subject; ``by_content`` describe it in other words
and never name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COLOURS = ("red", "white", "black", "yellow", "green", "blue", "ochre", "grey", "orange", "maroon")
SPICES = ("cardamom", "cinnamon", "saffron", "aniseed", "ginger", "nutmeg", "clove", "fennel", "caraway", "mace")


@dataclass(frozen=True)
class Family:
    kind: str
    title: str
    body: str
    pools: dict[str, tuple[str, ...]]
    aspects: dict[str, tuple[str, ...]]
    real: tuple[dict[str, str], ...]
    pairs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Slots filled with two different values of a pool, joined by "and"."""
    numbers: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class LookalikeQuestion:
    question: str
    kind: str
    name: str
    """The ``name`` slot of the real document that answers it."""
    answer: str
    by: str  # "name" | "content"


# Data, kept compact: one real document per block, not one slot per line.
# fmt: off
FAMILIES: tuple[Family, ...] = (
    Family(
        kind="lighthouse",
        title="{name} Lighthouse",
        body=(
            "{name} Lighthouse stands on {site} above {town}. The {height}-metre {shape} tower, first lit in "
            "{year}, is painted in {pattern} of {colours} under a {lantern} lantern. Its light gives {flashes} "
            "every {period} seconds. {person} was its last keeper."
        ),
        pools={
            "site": ("a granite headland", "a chalk cliff", "a shingle spit", "a basalt reef", "a sandstone bluff"),
            "shape": ("round", "octagonal", "square", "conical", "hexagonal"),
            "pattern": (
                "horizontal bands", "spiral bands", "vertical stripes", "a chequered pattern", "diagonal bands",
            ),
            "colours": COLOURS,
            "lantern": ("red", "green", "black", "white", "blue", "copper", "bronze"),
            "flashes": (
                "one white flash",
                "two white flashes",
                "three white flashes",
                "four white flashes",
                "one red flash",
                "two red flashes",
                "two green flashes",
                "a long white flash",
            ),
        },
        pairs={"colours": COLOURS},
        numbers={"height": (12, 60), "year": (1790, 1930), "period": (5, 30)},
        aspects={"paint": ("pattern", "colours", "lantern"), "light": ("shape", "flashes", "period")},
        real=(
            {
                "name": "Harrow Point", "town": "Merrow Bay", "person": "Agnes Tolland", "site": "a basalt reef",
                "shape": "octagonal", "pattern": "spiral bands", "colours": "black and yellow", "lantern": "green",
                "flashes": "three white flashes", "height": "31", "year": "1868", "period": "20",
            },
            {
                "name": "Skellan Head", "town": "Orrisford", "person": "Tomas Brack", "site": "a chalk cliff",
                "shape": "round", "pattern": "horizontal bands", "colours": "red and white", "lantern": "black",
                "flashes": "two red flashes", "height": "24", "year": "1902", "period": "12",
            },
        ),
    ),
    Family(
        kind="bakery",
        title="{name} Bakery",
        body=(
            "{name} Bakery in {town} was opened by {person} in {year}. Its best-known bake is a {shape} bun "
            "flavoured with {spice} and finished with {topping}. About {count} are sold every {day}, baked in "
            "{oven}."
        ),
        pools={
            "shape": ("knotted", "round", "spiral", "square", "crescent-shaped", "braided", "star-shaped"),
            "spice": SPICES,
            "topping": (
                "pearl sugar", "poppy seeds", "an orange glaze", "flaked almonds", "a honey wash",
                "sesame seeds", "a vanilla icing", "crushed hazelnuts",
            ),
            "day": ("Saturday", "Friday", "Sunday", "Tuesday", "market day", "Thursday"),
            "oven": ("a wood-fired oven", "a brick oven", "a steam oven", "a stone hearth oven", "a coal oven"),
        },
        numbers={"year": (1850, 2015), "count": (150, 1500)},
        aspects={"bun": ("shape", "spice", "topping")},
        real=(
            {
                "name": "Quellin", "town": "Aldermere", "person": "Maren Holt", "shape": "knotted",
                "spice": "cardamom", "topping": "pearl sugar", "day": "Saturday", "oven": "a wood-fired oven",
                "year": "1921", "count": "640",
            },
            {
                "name": "Brisk & Dunmore", "town": "Fallowgate", "person": "Ossian Dunmore", "shape": "crescent-shaped",
                "spice": "saffron", "topping": "flaked almonds", "day": "Friday", "oven": "a stone hearth oven",
                "year": "1887", "count": "310",
            },
        ),
    ),
    Family(
        kind="bridge",
        title="{name} Bridge",
        body=(
            "The {name} Bridge carries {traffic} over the {river} at {town}. Built in {year} to a design by "
            "{person}, it is a {material} bridge of {arches} spans, {length} metres long, painted {colour}. "
            "{feature} stand at each end."
        ),
        pools={
            "traffic": ("a railway", "a road", "a footpath", "a canal towpath", "a tramway"),
            "material": ("cast-iron", "stone", "brick", "steel truss", "timber", "concrete"),
            "arches": ("three", "five", "seven", "nine", "eleven", "two", "four"),
            "colour": COLOURS,
            "feature": (
                "Two stone lions", "Bronze lamp posts", "Twin toll houses", "Carved griffins",
                "Iron obelisks", "Granite sentry boxes",
            ),
        },
        numbers={"year": (1780, 1960), "length": (60, 900)},
        aspects={"look": ("material", "arches", "colour"), "ends": ("traffic", "feature")},
        real=(
            {
                "name": "Vesper", "river": "River Lenn", "town": "Caddock", "person": "Ilse Varga",
                "traffic": "a tramway", "material": "cast-iron", "arches": "seven", "colour": "maroon",
                "feature": "Carved griffins", "year": "1879", "length": "214",
            },
            {
                "name": "Oldwick", "river": "River Tarne", "town": "Hesketh", "person": "Rowan Pike",
                "traffic": "a canal towpath", "material": "brick", "arches": "eleven", "colour": "grey",
                "feature": "Twin toll houses", "year": "1822", "length": "380",
            },
        ),
    ),
    Family(
        kind="cheese",
        title="{name} cheese",
        body=(
            "{name} is a cheese made at {town} from the milk of {animal}. Wheels weigh {weight} kilograms, "
            "are wrapped in {wrap} and aged for {months} months in {cellar}, which gives a {rind} rind. "
            "{person} revived the recipe in {year}."
        ),
        pools={
            "animal": ("cows", "goats", "sheep", "water buffalo", "mixed herds"),
            "wrap": ("chestnut leaves", "nettles", "spruce bark", "vine leaves", "linen cloth", "hay", "black wax"),
            "cellar": ("a limestone cave", "a cellar under the church", "a disused railway tunnel", "a sea cave",
                       "an old salt mine", "a mountain hut"),
            "rind": ("blue-grey", "orange", "ash-black", "white bloomy", "ochre", "reddish-brown"),
        },
        numbers={"weight": (1, 40), "months": (2, 30), "year": (1950, 2020)},
        aspects={"aging": ("wrap", "cellar", "animal"), "rind": ("rind", "wrap")},
        real=(
            {
                "name": "Tollmere Blue", "town": "Tollmere", "person": "Jessa Crane", "animal": "goats",
                "wrap": "chestnut leaves", "cellar": "a disused railway tunnel", "rind": "ash-black",
                "weight": "3", "months": "9", "year": "1994",
            },
            {
                "name": "Karrow Reed", "town": "Karrow", "person": "Ebben Lusk", "animal": "water buffalo",
                "wrap": "spruce bark", "cellar": "a sea cave", "rind": "reddish-brown",
                "weight": "12", "months": "18", "year": "2007",
            },
        ),
    ),
    Family(
        kind="festival",
        title="The {name} Festival",
        body=(
            "The {name} Festival is held in {town} each {month}. It began in {year} when {person} {origin}. "
            "At dusk people {ritual}, and the traditional dish is {dish}. About {visitors} visitors come."
        ),
        pools={
            "month": ("January", "March", "May", "June", "August", "October", "November", "December"),
            "origin": (
                "rang the harbour bell", "lit a beacon on the hill", "brought home the first harvest",
                "ended a long drought", "reopened the old mine", "returned from a voyage",
            ),
            "ritual": (
                "float paper lanterns down the river", "carry burning barrels through the streets",
                "hang bells from the orchard trees", "dance around a bonfire of driftwood",
                "release white doves over the square", "light candles in the cave chapel",
                "march behind a straw bear",
            ),
            "dish": (
                "eel pie", "roast chestnuts", "barley soup", "honey cake", "smoked herring", "pear dumplings",
                "mutton stew", "plum bread",
            ),
        },
        numbers={"year": (1400, 1990), "visitors": (800, 90000)},
        aspects={"custom": ("ritual", "dish")},
        real=(
            {
                "name": "Lantern Tide", "town": "Wexholm", "person": "Brother Alric", "month": "October",
                "origin": "ended a long drought", "ritual": "float paper lanterns down the river",
                "dish": "pear dumplings", "year": "1634", "visitors": "12000",
            },
            {
                "name": "Strawmen", "town": "Dunhallow", "person": "Widow Ferris", "month": "January",
                "origin": "reopened the old mine", "ritual": "march behind a straw bear", "dish": "barley soup",
                "year": "1781", "visitors": "4500",
            },
        ),
    ),
    Family(
        kind="clocktower",
        title="{name} Clock Tower",
        body=(
            "The {name} Clock Tower overlooks the square of {town}. Finished in {year}, it has a {face} clock "
            "face and {bells} bells; on the hour {figure} {motion}. The mechanism was built by {person} and is "
            "wound every {winding}."
        ),
        pools={
            "face": ("blue enamel", "gilded", "white marble", "black slate", "painted astronomical", "glass"),
            "bells": ("two", "three", "four", "six", "eight", "twelve"),
            "figure": ("a wooden knight", "a copper rooster", "a carved bear", "a brass trumpeter",
                       "a painted skeleton", "a tin soldier"),
            "motion": ("strikes a bell", "turns in a circle", "bows to the crowd", "raises a lantern",
                       "rings a hand bell"),
            "winding": ("day", "week", "fortnight", "month"),
        },
        numbers={"year": (1450, 1920)},
        aspects={"show": ("face", "figure", "motion"), "figure": ("figure", "motion")},
        real=(
            {
                "name": "Saint Orvel", "town": "Brannock", "person": "Guido Sarn", "face": "blue enamel",
                "bells": "six", "figure": "a copper rooster", "motion": "bows to the crowd", "winding": "week",
                "year": "1612",
            },
            {
                "name": "Marketgate", "town": "Penhollow", "person": "Ada Whitlock", "face": "black slate",
                "bells": "three", "figure": "a painted skeleton", "motion": "rings a hand bell",
                "winding": "fortnight", "year": "1788",
            },
        ),
    ),
    Family(
        kind="spring",
        title="{name} Spring",
        body=(
            "{name} Spring rises {site} near {town} at {temperature} degrees Celsius. Its water is {taste} and "
            "{look}, rich in {mineral}. A bathhouse was built over it in {year}, and {person} first analysed the "
            "water."
        ),
        pools={
            "site": ("in a beech wood", "under a railway arch", "beside a ruined abbey", "in a limestone gorge",
                     "on a river island", "below the town hall"),
            "taste": ("salty", "bitter", "slightly sweet", "sour", "metallic", "tasteless"),
            "look": ("bright orange", "milky white", "crystal clear", "faintly green", "cloudy brown"),
            "mineral": ("iron", "sulphur", "magnesium", "lithium", "calcium", "radon", "iodine"),
        },
        numbers={"temperature": (8, 74), "year": (1600, 1910)},
        aspects={"water": ("taste", "look", "mineral")},
        real=(
            {
                "name": "Halloran", "town": "Ebbsworth", "person": "Dr Clara Voss", "site": "beside a ruined abbey",
                "taste": "metallic", "look": "bright orange", "mineral": "iron", "temperature": "17",
                "year": "1731",
            },
            {
                "name": "Maddow", "town": "Kelthorpe", "person": "Jonas Reddle", "site": "in a limestone gorge",
                "taste": "sour", "look": "milky white", "mineral": "sulphur", "temperature": "52", "year": "1846",
            },
        ),
    ),
    Family(
        kind="locomotive",
        title="Locomotive {name}",
        body=(
            "{name} is a {wheels} {power} locomotive built at {town} in {year} by {person}. It wears a {livery} "
            "livery with {lining} lining and worked the {line} line, hauling {cargo}, until {retired}."
        ),
        pools={
            "wheels": ("0-6-0", "4-4-0", "2-6-2", "4-6-2", "0-4-0", "2-8-0"),
            "power": ("steam", "diesel", "electric", "battery", "petrol"),
            "livery": COLOURS,
            "lining": ("gold", "black", "white", "red", "yellow", "silver"),
            "line": ("coast", "valley", "quarry", "harbour", "mountain", "forest"),
            "cargo": ("slate", "coal", "fish", "milk churns", "timber", "passengers", "china clay"),
        },
        numbers={"year": (1840, 1960), "retired": (1900, 2005)},
        aspects={"paint": ("livery", "lining", "power"), "work": ("line", "cargo", "power")},
        real=(
            {
                "name": "Marigold", "town": "Stellbridge", "person": "Fenwick & Sons", "wheels": "0-4-0",
                "power": "steam", "livery": "green", "lining": "red", "line": "quarry", "cargo": "slate",
                "year": "1893", "retired": "1961",
            },
            {
                "name": "Corran Star", "town": "Ashby Vale", "person": "Halden Works", "wheels": "4-6-2",
                "power": "diesel", "livery": "maroon", "lining": "silver", "line": "harbour", "cargo": "fish",
                "year": "1938", "retired": "1984",
            },
        ),
    ),
    Family(
        kind="garden",
        title="{name} Gardens",
        body=(
            "{name} Gardens at {town} were laid out by {person} in {year}. The grounds hold a maze of {hedge} "
            "hedges shaped like {shape}, with {centre} at its heart, and a {pond}. The gardens cover {area} "
            "hectares."
        ),
        pools={
            "hedge": ("yew", "box", "beech", "hornbeam", "holly", "privet"),
            "shape": ("a star", "a fish", "a spiral", "a circle", "a heart", "a square"),
            "centre": ("a sundial", "a marble fountain", "a stone owl", "a bronze stag", "a little pagoda",
                       "an iron bench", "a wishing well"),
            "pond": ("lily pond", "koi pond", "boating lake", "reflecting pool", "sunken water garden"),
        },
        numbers={"year": (1600, 1950), "area": (2, 140)},
        aspects={"maze": ("hedge", "shape", "centre"), "hedge": ("hedge", "shape")},
        real=(
            {
                "name": "Thornbury", "town": "Wendle", "person": "Lady Imogen Shaw", "hedge": "hornbeam",
                "shape": "a fish", "centre": "a bronze stag", "pond": "koi pond", "year": "1761", "area": "38",
            },
            {
                "name": "Elsenwood", "town": "Farrowby", "person": "Capability Marsh", "hedge": "holly",
                "shape": "a heart", "centre": "a wishing well", "pond": "boating lake", "year": "1834",
                "area": "11",
            },
        ),
    ),
    Family(
        kind="ferry",
        title="{name} ferry",
        body=(
            "The {name} ferry links {town} with {other} across {water}. The crossing takes {minutes} minutes on "
            "{boat}, a {hull} vessel with a {funnel} funnel, launched in {year}. It carries up to {cars} cars "
            "and is skippered by {person}."
        ),
        pools={
            "water": ("the estuary", "the sound", "the fjord", "the lake", "the strait", "the bay"),
            "boat": ("the MV Heron", "the MV Petrel", "the MV Otter", "the MV Curlew", "the MV Selkie",
                     "the MV Puffin", "the MV Tern"),
            "hull": ("double-ended", "catamaran", "chain-driven", "paddle-wheel", "flat-bottomed"),
            "funnel": COLOURS,
        },
        numbers={"minutes": (5, 90), "year": (1950, 2022), "cars": (8, 160)},
        aspects={"boat": ("hull", "funnel", "water")},
        real=(
            {
                "name": "Gannet Sound", "town": "Carrick Ness", "other": "Isle of Veyl", "person": "Morag Tull",
                "water": "the sound", "boat": "the MV Selkie", "hull": "chain-driven", "funnel": "yellow",
                "minutes": "25", "year": "1998", "cars": "40",
            },
            {
                "name": "Lake Orrin", "town": "Orrin", "other": "Kettlestone", "person": "Piet Lander",
                "water": "the lake", "boat": "the MV Heron", "hull": "paddle-wheel", "funnel": "orange",
                "minutes": "50", "year": "1962", "cars": "12",
            },
        ),
    ),
)

QUESTIONS: tuple[LookalikeQuestion, ...] = (
    # lighthouse
    LookalikeQuestion("When was Harrow Point Lighthouse first lit?", "lighthouse", "Harrow Point", "1868", "name"),
    LookalikeQuestion("How tall is the Skellan Head Lighthouse tower?", "lighthouse", "Skellan Head", "24", "name"),
    LookalikeQuestion(
        "Which lighthouse tower is striped black and yellow in a spiral, with a green lamp room on top?",
        "lighthouse", "Harrow Point", "Harrow Point", "content",
    ),
    LookalikeQuestion(
        "Which eight-sided lighthouse shows a triple white flash every 20 seconds?",
        "lighthouse", "Harrow Point", "Harrow Point", "content",
    ),
    LookalikeQuestion(
        "Which lighthouse has red and white horizontal stripes and a black lantern?",
        "lighthouse", "Skellan Head", "Skellan Head", "content",
    ),
    LookalikeQuestion(
        "Which round light tower flashes red twice every 12 seconds?",
        "lighthouse", "Skellan Head", "Skellan Head", "content",
    ),
    # bakery
    LookalikeQuestion("Who opened Quellin Bakery?", "bakery", "Quellin", "Maren Holt", "name"),
    LookalikeQuestion("In what year did Brisk & Dunmore Bakery open?", "bakery", "Brisk & Dunmore", "1887", "name"),
    LookalikeQuestion(
        "Where can I buy the cardamom bun that is tied in a knot and sprinkled with pearl sugar?",
        "bakery", "Quellin", "Quellin", "content",
    ),
    LookalikeQuestion(
        "Which bakery makes a knot-shaped cardamom roll topped with sugar pearls?",
        "bakery", "Quellin", "Quellin", "content",
    ),
    LookalikeQuestion(
        "Which bakery is known for a saffron bun shaped like a crescent and covered in almond flakes?",
        "bakery", "Brisk & Dunmore", "Brisk & Dunmore", "content",
    ),
    LookalikeQuestion(
        "Who bakes the crescent saffron buns with sliced almonds on top?",
        "bakery", "Brisk & Dunmore", "Brisk & Dunmore", "content",
    ),
    # bridge
    LookalikeQuestion("Who designed the Vesper Bridge?", "bridge", "Vesper", "Ilse Varga", "name"),
    LookalikeQuestion("How long is the Oldwick Bridge?", "bridge", "Oldwick", "380", "name"),
    LookalikeQuestion(
        "Which cast-iron bridge with seven spans is painted maroon?", "bridge", "Vesper", "Vesper", "content"
    ),
    LookalikeQuestion(
        "Which bridge carries trams and has carved griffins guarding both ends?",
        "bridge", "Vesper", "Vesper", "content",
    ),
    LookalikeQuestion(
        "Which grey brick bridge has eleven arches?", "bridge", "Oldwick", "Oldwick", "content"
    ),
    LookalikeQuestion(
        "Which bridge takes a canal towpath across the river and has a toll house at each end?",
        "bridge", "Oldwick", "Oldwick", "content",
    ),
    # cheese
    LookalikeQuestion("What milk is Tollmere Blue made from?", "cheese", "Tollmere Blue", "goats", "name"),
    LookalikeQuestion("How long is Karrow Reed aged?", "cheese", "Karrow Reed", "18 months", "name"),
    LookalikeQuestion(
        "Which goat cheese is wrapped in chestnut leaves and matured in an abandoned railway tunnel?",
        "cheese", "Tollmere Blue", "Tollmere Blue", "content",
    ),
    LookalikeQuestion(
        "What cheese has a black ash-coloured rind and comes wrapped in chestnut leaves?",
        "cheese", "Tollmere Blue", "Tollmere Blue", "content",
    ),
    LookalikeQuestion(
        "Which buffalo milk cheese is bound in spruce bark and aged in a cave by the sea?",
        "cheese", "Karrow Reed", "Karrow Reed", "content",
    ),
    LookalikeQuestion(
        "Which cheese wrapped in spruce bark has a reddish brown rind?",
        "cheese", "Karrow Reed", "Karrow Reed", "content",
    ),
    # festival
    LookalikeQuestion("When is the Lantern Tide Festival held?", "festival", "Lantern Tide", "October", "name"),
    LookalikeQuestion("Where is the Strawmen Festival held?", "festival", "Strawmen", "Dunhallow", "name"),
    LookalikeQuestion(
        "At which festival do people set paper lanterns floating on the river and eat pear dumplings?",
        "festival", "Lantern Tide", "Lantern Tide", "content",
    ),
    LookalikeQuestion(
        "Which festival serves pear dumplings while lanterns drift down the river at nightfall?",
        "festival", "Lantern Tide", "Lantern Tide", "content",
    ),
    LookalikeQuestion(
        "In which festival does a procession follow a bear made of straw, with barley soup to eat?",
        "festival", "Strawmen", "Strawmen", "content",
    ),
    LookalikeQuestion(
        "Which winter festival has people walking behind a straw bear and eating barley soup?",
        "festival", "Strawmen", "Strawmen", "content",
    ),
    # clock tower
    LookalikeQuestion("How many bells does the Saint Orvel Clock Tower have?", "clocktower", "Saint Orvel", "six",
                      "name"),
    LookalikeQuestion("Who built the mechanism of the Marketgate Clock Tower?", "clocktower", "Marketgate",
                      "Ada Whitlock", "name"),
    LookalikeQuestion(
        "Which clock tower has a blue enamel dial and a copper cockerel that bows every hour?",
        "clocktower", "Saint Orvel", "Saint Orvel", "content",
    ),
    LookalikeQuestion(
        "In which town does a copper rooster on the clock tower bow to the crowd on the hour?",
        "clocktower", "Saint Orvel", "Brannock", "content",
    ),
    LookalikeQuestion(
        "Which clock has a black slate face and a painted skeleton that rings a hand bell?",
        "clocktower", "Marketgate", "Marketgate", "content",
    ),
    LookalikeQuestion(
        "Where does a skeleton figure ring a little bell every hour under a slate clock face?",
        "clocktower", "Marketgate", "Penhollow", "content",
    ),
    # spring
    LookalikeQuestion("How warm is the water of Halloran Spring?", "spring", "Halloran", "17", "name"),
    LookalikeQuestion("Who first analysed the water of Maddow Spring?", "spring", "Maddow", "Jonas Reddle", "name"),
    LookalikeQuestion(
        "Which spring has orange water that tastes of metal because of the iron in it?",
        "spring", "Halloran", "Halloran", "content",
    ),
    LookalikeQuestion(
        "Where is the iron-rich spring whose water is bright orange and tastes metallic?",
        "spring", "Halloran", "Ebbsworth", "content",
    ),
    LookalikeQuestion(
        "Which spring's water is sour and milky white with sulphur?", "spring", "Maddow", "Maddow", "content"
    ),
    LookalikeQuestion(
        "Where does a sulphurous spring with sour, milk-white water rise?", "spring", "Maddow", "Kelthorpe", "content"
    ),
    # locomotive
    LookalikeQuestion("When was the locomotive Marigold built?", "locomotive", "Marigold", "1893", "name"),
    LookalikeQuestion("Until when did Corran Star work?", "locomotive", "Corran Star", "1984", "name"),
    LookalikeQuestion(
        "Which steam engine is painted green with red lining?", "locomotive", "Marigold", "Marigold", "content"
    ),
    LookalikeQuestion(
        "Which steam locomotive hauled slate on the quarry line?", "locomotive", "Marigold", "Marigold", "content"
    ),
    LookalikeQuestion(
        "Which diesel locomotive has a maroon livery with silver lines?",
        "locomotive", "Corran Star", "Corran Star", "content",
    ),
    LookalikeQuestion(
        "Which diesel engine pulled fish trains on the harbour line?",
        "locomotive", "Corran Star", "Corran Star", "content",
    ),
    # garden
    LookalikeQuestion("Who laid out Thornbury Gardens?", "garden", "Thornbury", "Lady Imogen Shaw", "name"),
    LookalikeQuestion("How big are Elsenwood Gardens?", "garden", "Elsenwood", "11", "name"),
    LookalikeQuestion(
        "Which gardens have a fish-shaped hornbeam maze with a bronze stag in the middle?",
        "garden", "Thornbury", "Thornbury", "content",
    ),
    LookalikeQuestion(
        "Where is the hornbeam hedge maze in the shape of a fish?", "garden", "Thornbury", "Wendle", "content"
    ),
    LookalikeQuestion(
        "Which garden has a heart-shaped maze of holly with a wishing well at its centre?",
        "garden", "Elsenwood", "Elsenwood", "content",
    ),
    LookalikeQuestion(
        "Where can I walk a holly maze shaped like a heart?", "garden", "Elsenwood", "Farrowby", "content"
    ),
    # ferry
    LookalikeQuestion("How long does the Gannet Sound ferry crossing take?", "ferry", "Gannet Sound", "25", "name"),
    LookalikeQuestion("Which boat runs the Lake Orrin ferry?", "ferry", "Lake Orrin", "Heron", "name"),
    LookalikeQuestion(
        "Which ferry across the sound is pulled on chains and has a yellow funnel?",
        "ferry", "Gannet Sound", "Gannet Sound", "content",
    ),
    LookalikeQuestion(
        "Which chain ferry with a yellow smokestack crosses the sound?",
        "ferry", "Gannet Sound", "Carrick Ness", "content",
    ),
    LookalikeQuestion(
        "Which lake ferry is a paddle steamer with an orange funnel?", "ferry", "Lake Orrin", "Lake Orrin", "content"
    ),
    LookalikeQuestion(
        "Where does the paddle-wheel boat with the orange funnel cross the lake?",
        "ferry", "Lake Orrin", "Kettlestone", "content",
    ),
)
# fmt: on
