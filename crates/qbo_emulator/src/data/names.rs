//! Word lists for plausible, made-up names, addresses and descriptions.

pub(crate) const FIRST: &[&str] = &[
    "Amy", "Bill", "Cathy", "Dylan", "Emily", "Frank", "Grace", "Hector", "Irene", "Jamal", "Kara",
    "Luis", "Maria", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Sean", "Tomoko", "Umar", "Vera",
    "Wes", "Xin", "Yara", "Zoe", "Diego", "Helen", "Ivan", "Julia", "Kevin", "Laura", "Marco",
    "Nora", "Pablo", "Ruth", "Sofia", "Theo", "Ursula", "Victor", "Wendy", "Aiden", "Beatriz",
];

pub(crate) const LAST: &[&str] = &[
    "Lauterbach", "Cook", "Dietrich", "Gevelber", "Keller", "Kinney", "Lew", "Mahoney", "Nguyen",
    "Okafor", "Peterson", "Qureshi", "Rondonuwu", "Sonnenschein", "Tran", "Underwood", "Valdez",
    "Weiskopf", "Xu", "Yamamoto", "Zeng", "Alvarez", "Bauer", "Castillo", "Dubois", "Eriksen",
    "Fischer", "Garcia", "Haddad", "Ibrahim", "Jensen", "Kowalski", "Lindqvist", "Moreau",
    "Novak", "Ortega", "Patel", "Rossi", "Schmidt", "Tanaka", "Ueda", "Vargas", "Wagner",
];

pub(crate) const COMPANY_A: &[&str] = &[
    "Amy's", "Bayshore", "Cool", "Cypress", "Diego's", "Dukes", "Evergreen", "Freeman", "Golden",
    "Granite", "Harbor", "Highland", "Jeff's", "Kookies", "Lakeside", "Mason's", "Northwind",
    "Oakridge", "Pacific", "Paulsen", "Red Rock", "Redwood", "Rondonuwu", "Sequoia", "Shara",
    "Silver Creek", "Sonnenschein", "Sushi by", "Travis", "Video", "Weiskopf", "Willow",
];

pub(crate) const COMPANY_B: &[&str] = &[
    "Bird Sanctuary", "Cars", "Fruit Company", "Family Store", "Basketball", "Jalopies",
    "Consulting", "Landscaping", "Medical", "Bakery", "Auto Repair", "Design Studio", "Games",
    "Builders", "Flower Shop", "Dental", "Plumbing", "Catering", "Fitness", "Books", "Coffee",
    "Pet Care", "Electric", "Printing", "Roofing", "Tutoring", "Winery", "Yoga",
];

pub(crate) const COMPANY_C: &[&str] = &["", "", "", " Inc.", " LLC", " Co.", " & Sons", " Group", " Ltd."];

pub(crate) const STREETS: &[&str] = &[
    "Finch St.", "Cypress Hill Ave.", "Main St.", "Ocean View Rd.", "Pine Ct.", "Willow Way",
    "Hillcrest Dr.", "Maple Ave.", "Sunset Blvd.", "El Camino Real", "Oak Knoll Ln.",
    "Park Pl.", "Harbor Dr.", "Vista Grande", "Meadow Ln.", "Lincoln Ave.", "Cedar St.",
];

/// (City, state, postal prefix, lat, long)
pub(crate) const CITIES: &[(&str, &str, &str, &str, &str)] = &[
    ("Bayshore", "CA", "943", "37.707", "-122.407"),
    ("Middlefield", "CA", "943", "37.453", "-122.117"),
    ("Sunnyvale", "CA", "940", "37.368", "-122.036"),
    ("Palo Alto", "CA", "943", "37.441", "-122.143"),
    ("San Jose", "CA", "951", "37.338", "-121.886"),
    ("Menlo Park", "CA", "940", "37.452", "-122.182"),
    ("Tucson", "AZ", "857", "32.222", "-110.974"),
    ("Portland", "OR", "972", "45.515", "-122.678"),
    ("Seattle", "WA", "981", "47.606", "-122.332"),
    ("Reno", "NV", "895", "39.529", "-119.813"),
    ("Boise", "ID", "837", "43.615", "-116.202"),
    ("Denver", "CO", "802", "39.739", "-104.990"),
    ("Austin", "TX", "787", "30.267", "-97.743"),
    ("Madison", "WI", "537", "43.073", "-89.401"),
];

pub(crate) const ITEM_A: &[&str] = &[
    "Rock", "Garden", "Deluxe", "Premium", "Weekly", "Monthly", "Custom", "Standard", "Copper",
    "Cedar", "Stone", "Solar", "Organic", "Heavy Duty", "Compact", "Outdoor", "Indoor", "Express",
    "Seasonal", "Classic", "Bamboo", "Steel", "Ceramic", "Hand-made",
];

pub(crate) const ITEM_B: &[&str] = &[
    "Fountain", "Lawn Care", "Design", "Installation", "Pump", "Sprinkler Heads", "Pest Control",
    "Hours", "Trimming", "Lighting", "Soil", "Sod", "Gardening", "Maintenance", "Consultation",
    "Planter", "Bench", "Fence Panel", "Irrigation Kit", "Mulch", "Tree Removal", "Deck Stain",
    "Birdbath", "Hose Reel", "Paving Stones", "Snow Removal",
];

pub(crate) const MEMOS: &[&str] = &[
    "Thank you for your business and have a great day!",
    "Thanks for choosing us. Payment is due by the date shown above.",
    "We appreciate your prompt payment.",
    "Please reference the invoice number with your payment.",
];

pub(crate) const NOTES: &[&str] = &[
    "Prefers email contact in the morning.",
    "Gate code 4512. Dog in the back yard.",
    "Net 30 agreed with the owner in person.",
    "Seasonal customer, services April to October.",
    "Ask for the office manager when calling.",
];

/// (Id, name) of income accounts used by items.
pub(crate) const INCOME_ACCOUNTS: &[(&str, &str)] = &[
    ("79", "Sales of Product Income"),
    ("45", "Landscaping Services"),
    ("52", "Installation"),
    ("54", "Maintenance and Repair"),
    ("1", "Services"),
];

/// (SalesTermRef value, name, days)
pub(crate) const TERMS: &[(&str, &str, i64)] =
    &[("1", "Due on receipt", 0), ("2", "Net 15", 15), ("3", "Net 30", 30), ("4", "Net 60", 60)];

/// Tax rates in basis points of a percent (825 = 8.25 %), with their TaxRateRef.
pub(crate) const TAX_RATES: &[(u32, &str)] = &[(800, "3"), (825, "4"), (725, "5"), (950, "6"), (625, "7")];
